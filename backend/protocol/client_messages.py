"""Text messages a client may send, validated; anything else becomes a `ProtocolError`."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from backend.protocol.error_codes import ErrorCode

SYSTEM_PROMPT_MAX_CHARS = 2000


class ProtocolError(ValueError):
    """A client message was rejected; `code` goes into the `error` message sent back."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InitParams(_Strict):
    """Which stages run for this session (the reference design's `init.params`).

    The switches take JSON `true`/`false` only: "yes", "on", 1 and the like are refused.
    """

    use_yolo: StrictBool = True
    use_yolo_pose: StrictBool = False
    use_ocr: StrictBool = False
    use_motion: StrictBool = False
    use_langchain: StrictBool = False
    system_prompt: str | None = Field(None, max_length=SYSTEM_PROMPT_MAX_CHARS)


class InitMessage(_Strict):
    type: Literal["init"]
    params: InitParams = InitParams()


class StartMessage(_Strict):
    type: Literal["start"]


class StopMessage(_Strict):
    type: Literal["stop"]


class OcrRequestMessage(_Strict):
    """Ask for OCR on an upcoming frame (still throttled)."""

    type: Literal["ocr"]


class PongMessage(_Strict):
    type: Literal["pong"]


ClientMessage = Annotated[
    InitMessage | StartMessage | StopMessage | OcrRequestMessage | PongMessage,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
KNOWN_TYPES = ("init", "start", "stop", "ocr", "pong")


def parse_client_message(text: str, max_bytes: int) -> ClientMessage:
    """Validate one text frame; the error says what was wrong and what is expected."""
    if len(text.encode()) > max_bytes:
        raise ProtocolError(
            ErrorCode.MESSAGE_TOO_LARGE, f"text messages are limited to {max_bytes} bytes"
        )
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            ErrorCode.INVALID_JSON, f"text messages must be JSON objects ({exc.msg})"
        ) from None
    except RecursionError:  # "[[[[..." deeper than the interpreter's recursion limit
        raise ProtocolError(
            ErrorCode.INVALID_JSON, "text messages must be JSON objects (nested too deeply)"
        ) from None
    except ValueError:  # an integer over Python's digit limit (sys.get_int_max_str_digits)
        raise ProtocolError(
            ErrorCode.INVALID_JSON,
            "text messages must be JSON objects (a number has too many digits)",
        ) from None
    if not isinstance(raw, dict):
        raise ProtocolError(
            ErrorCode.INVALID_JSON, "text messages must be JSON objects with a 'type'"
        )
    kind = raw.get("type")
    if kind not in KNOWN_TYPES:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {kind!r}; expected one of {', '.join(KNOWN_TYPES)}",
        )
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:]) or 'message'}: {_problem(error)}"
            for error in exc.errors()
        )
        code = ErrorCode.INVALID_PARAMS if kind == "init" else ErrorCode.INVALID_MESSAGE
        raise ProtocolError(code, f"invalid '{kind}' message: {problems}") from None


def _problem(error: ErrorDetails) -> str:
    if error["type"] == "bool_type":
        return "must be JSON true or false"
    return error["msg"]
