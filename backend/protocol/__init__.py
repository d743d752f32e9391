"""The WebSocket protocol of `/ws/inference`: client messages in, server messages out."""

PROTOCOL_VERSION = 1
