"""Messages the server sends, as typed dicts (no per-frame model overhead) plus their schema.

`docs/protocol.schema.json` is generated from these types (`cvstack protocol generate`) and the
tests validate real messages against it.
"""

from __future__ import annotations

import re
from typing import Any, Literal, NotRequired

from pydantic import TypeAdapter
from typing_extensions import TypedDict

from backend.protocol import PROTOCOL_VERSION
from backend.protocol.error_codes import ErrorCode

QueueState = Literal["waiting", "running", "finished"]


class QueueStatus(TypedDict):
    type: Literal["queue_status"]
    state: QueueState
    active_sessions: int
    waiting_sessions: int
    position: NotRequired[int]  # 1-based place in the queue while waiting
    protocol_version: NotRequired[int]  # in the first message of every connection
    session_id: NotRequired[str]


class YoloResult(TypedDict):
    boxes: list[list[float]]  # [x1, y1, x2, y2] in pixels of the frame the client sent
    scores: list[float]
    classes: list[int]
    labels: list[str]
    track_ids: list[int]  # -1: not tracked
    velocities: list[list[float]]  # [vx, vy] px per result update, for live mode


class PoseResult(TypedDict):
    boxes: list[list[float]]
    scores: list[float]
    keypoints: list[list[list[float]]]  # per person: [[x, y, conf] x 17]


class OcrItem(TypedDict):
    box: list[float]
    text: str
    score: float


class FlowResult(TypedDict):
    fx: list[list[float]]  # rows x cols, px/frame in frame pixels
    fy: list[list[float]]
    step: int  # frame pixels between grid points
    orig_w: int
    orig_h: int
    mean_magnitude: float


class OcrInfo(TypedDict):
    reason: str  # what triggered it: client_request, new_object:<label>, motion_settled
    frame_idx: int  # the frame OCR ran on (results arrive with a later frame)
    duration_ms: float


class FrameOutputs(TypedDict):
    """What the pipeline makes of one frame: a new stage is a field here (and on the page)."""

    width: int
    height: int
    yolo: YoloResult | None
    pose: PoseResult | None
    ocr: list[OcrItem] | None
    ocr_info: OcrInfo | None
    flow: FlowResult | None
    stage_ms: dict[str, float]
    errors: dict[str, str]  # stage -> "code: message"; the other stages still ran


class InferenceData(FrameOutputs):
    """A frame's outputs and what the session adds: its place in the stream and timings."""

    frame_idx: int
    fps: float  # results per second of this session
    latency_ms: float  # frame received -> result sent
    dropped_frames: int  # frames replaced by newer ones before processing, this session


class Inference(TypedDict):
    type: Literal["inference"]
    data: InferenceData


class LlmSummary(TypedDict):
    type: Literal["llm_summary"]
    data: str


class Ping(TypedDict):
    type: Literal["ping"]


class ErrorMessage(TypedDict):
    type: Literal["error"]
    code: ErrorCode
    message: str
    fatal: bool  # true: the server closes the connection after this message


class ModelSourceInfo(TypedDict):
    kind: str  # official, pretrained, user or random (the manifest's source kinds)
    detail: str  # which weights, for people (server file paths replaced)
    meaningful: bool  # false: random weights, whose boxes and keypoints mean nothing


class ServedModel(TypedDict):
    name: str  # the model's name in Triton and the manifest
    source: ModelSourceInfo
    classes: int  # how many classes it tells apart
    class_names: list[str]


class ModelsInfo(TypedDict):
    detection: ServedModel
    pose: ServedModel
    warning: str | None  # set when a model has random weights: what that means and the fix


class Models(TypedDict):
    """Sent once per connection, right after the first `queue_status`."""

    type: Literal["models"]
    data: ModelsInfo


ServerMessage = QueueStatus | Models | Inference | LlmSummary | Ping | ErrorMessage


def inference_message(
    outputs: FrameOutputs, *, frame_idx: int, fps: float, latency_ms: float, dropped_frames: int
) -> Inference:
    """The `inference` message of one frame."""
    data: InferenceData = {
        **outputs,
        "frame_idx": frame_idx,
        "fps": fps,
        "latency_ms": latency_ms,
        "dropped_frames": dropped_frames,
    }
    return {"type": "inference", "data": data}


def queue_status(
    state: QueueState,
    active: int,
    waiting: int,
    *,
    position: int | None = None,
    session_id: str | None = None,
) -> QueueStatus:
    message: QueueStatus = {
        "type": "queue_status",
        "state": state,
        "active_sessions": active,
        "waiting_sessions": waiting,
    }
    if position is not None:
        message["position"] = position
    if session_id is not None:
        message["session_id"] = session_id
        message["protocol_version"] = PROTOCOL_VERSION
    return message


# An absolute file path of two or more parts ("/srv/cvstack/models/x.onnx"), not a URL's path
# ("http://host/a/b") nor a route mentioned in prose ("call /start").
_SERVER_PATH = re.compile(r"(?<![\w.:/~-])/(?:[\w.@+-]+/)+[\w.@+-]*")
SERVER_PATH_PLACEHOLDER = "<server path>"


def without_paths(text: str) -> str:
    """`text` with absolute server file paths replaced: clients need not see the layout."""
    return _SERVER_PATH.sub(SERVER_PATH_PLACEHOLDER, text) if "/" in text else text


def error_message(code: ErrorCode, message: str, *, fatal: bool = False) -> ErrorMessage:
    """An `error` message; any server file path in `message` is replaced by a placeholder."""
    return {"type": "error", "code": code, "message": without_paths(message), "fatal": fatal}


def server_message_schema() -> dict[str, Any]:
    """JSON Schema of every server message."""
    schema = TypeAdapter(ServerMessage).json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"cvstack /ws/inference server messages, protocol version {PROTOCOL_VERSION}"
    return schema
