"""Prometheus metrics of the backend (no per-session labels)."""
