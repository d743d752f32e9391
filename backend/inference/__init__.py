"""Calls to the models served by Triton."""
