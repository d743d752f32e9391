"""One WebSocket session: admission, the latest-frame queue, the protocol state machine, and
the runtime that every session of the process shares."""
