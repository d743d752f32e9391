"""Process-wide configuration: the backend's settings."""
