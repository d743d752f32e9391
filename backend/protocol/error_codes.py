"""Every error code the server sends: the one list the server, schema and page share.

A code is the `code` of an `error` message, or the head of a stage's text in an `inference`
message's `errors` ("code: message"). `docs/protocol.schema.json` and the page's
`frontend/js/error_codes.js` are generated from this enum (`cvstack protocol generate`);
docs/protocol.md says when each code is sent.
"""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class ErrorCode(StrEnum):
    """Why the server sent an `error`, or why a stage failed; the value goes on the wire."""

    # A binary message that is not an acceptable JPEG: that frame gets no result.
    EMPTY_FRAME = "empty_frame"
    NOT_JPEG = "not_jpeg"
    CORRUPT_JPEG = "corrupt_jpeg"
    FRAME_TOO_LARGE = "frame_too_large"
    FRAME_TOO_MANY_PIXELS = "frame_too_many_pixels"
    FRAME_TOO_COMPLEX = "frame_too_complex"
    # A text message that is not a valid control message.
    INVALID_JSON = "invalid_json"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_MESSAGE = "invalid_message"
    INVALID_PARAMS = "invalid_params"
    MESSAGE_TOO_LARGE = "message_too_large"
    # A control message out of order.
    NOT_STARTED = "not_started"
    INIT_REQUIRED = "init_required"
    ALREADY_STARTED = "already_started"
    # LLM summaries: the other stages go on.
    SUMMARIES_UNAVAILABLE = "summaries_unavailable"
    SUMMARIES_DELAYED = "summaries_delayed"
    SUMMARIES_DROPPED = "summaries_dropped"
    # A bug stopped processing (`start` resumes), or, in `errors`, one stage of one frame.
    INTERNAL_ERROR = "internal_error"
    # In `errors` only: one stage failed for one frame; the session and the other stages go on.
    TRITON_UNAVAILABLE = "triton_unavailable"
    TRITON_TIMEOUT = "triton_timeout"
    TRITON_ERROR = "triton_error"
    FRAME_TOO_SMALL = "frame_too_small"
    MOTION_FAILED = "motion_failed"
    OCR_UNAVAILABLE = "ocr_unavailable"
    OCR_FAILED = "ocr_failed"
    # Fatal: the server closes the connection next.
    SERVER_BUSY = "server_busy"
    DRAINING = "draining"
    TOKEN_MISSING = "token_missing"
    TOKEN_MALFORMED = "token_malformed"
    TOKEN_INVALID = "token_invalid"
    TOKEN_EXPIRED = "token_expired"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    TOO_MANY_MESSAGES = "too_many_messages"
    SESSION_REPLACED = "session_replaced"


# Errors about one frame: the session goes on and that frame gets no result (the page frees its
# in-flight slot on these). The JPEG checks raise exactly these (backend/pipeline/jpeg.py).
FRAME_ERRORS = (
    ErrorCode.EMPTY_FRAME,
    ErrorCode.NOT_JPEG,
    ErrorCode.CORRUPT_JPEG,
    ErrorCode.FRAME_TOO_LARGE,
    ErrorCode.FRAME_TOO_MANY_PIXELS,
    ErrorCode.FRAME_TOO_COMPLEX,
)


class StageError(Exception):
    """One stage failed for this frame: its text in `errors` is "code: message"."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
