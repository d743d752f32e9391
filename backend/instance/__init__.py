"""What runs on the GPU instance around the backend: model sync, engine jobs, heartbeat, nginx."""
