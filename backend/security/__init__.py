"""Access control for WebSocket sessions: signed session tokens and the origin allowlist."""
