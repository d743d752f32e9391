"""GET /status: the instance state and whether the backend is ready to serve."""
