"""HTTP and WebSocket routes of the backend service."""
