"""One WebSocket session: admission, the latest-frame queue and the protocol state machine."""
