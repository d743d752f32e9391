"""POST /start: start the GPU instance on demand and hand out a session token."""
