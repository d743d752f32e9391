"""Process-wide configuration and shared runtime resources."""
