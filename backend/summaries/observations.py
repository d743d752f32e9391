"""What a session saw during one summary window, reduced to counts that merge by addition.

Counts are additive so that several windows merge into one request when the LLM falls
behind; OCR texts are kept verbatim (whitespace collapsed, so each fits on one line).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from backend.protocol.server_messages import FrameOutputs

MAX_TEXTS = 20  # per observation: a sign-filled scene must not make the prompt unbounded
MAX_TEXT_CHARS = 200


@dataclass(frozen=True)
class Observation:
    """Counts over `start`..`end` (Unix seconds): detections by label, poses, texts, motion."""

    start: float
    end: float
    frames: int
    detections: dict[str, int]
    poses: int = 0
    texts: tuple[str, ...] = ()
    motion_frames: int = 0
    motion_sum: float = 0.0  # sum of per-frame mean flow magnitudes, px/frame

    @property
    def mean_motion(self) -> float | None:
        return self.motion_sum / self.motion_frames if self.motion_frames else None

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "frames": self.frames,
            "detections": self.detections,
            "poses": self.poses,
            "texts": list(self.texts),
            "motion_frames": self.motion_frames,
            "motion_sum": self.motion_sum,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Observation:
        return cls(
            start=float(data["start"]),
            end=float(data["end"]),
            frames=int(data["frames"]),
            detections={str(k): int(v) for k, v in data["detections"].items()},
            poses=int(data["poses"]),
            texts=tuple(str(t) for t in data["texts"]),
            motion_frames=int(data["motion_frames"]),
            motion_sum=float(data["motion_sum"]),
        )


def merge(observations: list[Observation]) -> Observation:
    """One observation covering several consecutive windows (in order)."""
    detections: Counter[str] = Counter()
    texts: dict[str, None] = {}
    for observation in observations:
        detections.update(observation.detections)
        texts.update(dict.fromkeys(observation.texts))
    return Observation(
        start=observations[0].start,
        end=observations[-1].end,
        frames=sum(o.frames for o in observations),
        detections=dict(detections),
        poses=sum(o.poses for o in observations),
        texts=tuple(texts)[:MAX_TEXTS],
        motion_frames=sum(o.motion_frames for o in observations),
        motion_sum=sum(o.motion_sum for o in observations),
    )


@dataclass
class WindowCounts:
    """The window being filled: `add` costs O(objects in the frame), nothing else."""

    start: float
    frames: int = 0
    detections: Counter[str] = field(default_factory=Counter)
    poses: int = 0
    texts: dict[str, None] = field(default_factory=dict)
    motion_frames: int = 0
    motion_sum: float = 0.0

    def add(self, outputs: FrameOutputs) -> None:
        self.frames += 1
        if outputs["yolo"] is not None:
            self.detections.update(outputs["yolo"]["labels"])
        if outputs["pose"] is not None:
            self.poses += len(outputs["pose"]["boxes"])
        for item in outputs["ocr"] or ():
            text = " ".join(item["text"].split())[:MAX_TEXT_CHARS]
            if text and len(self.texts) < MAX_TEXTS:
                self.texts[text] = None
        if outputs["flow"] is not None:
            self.motion_frames += 1
            self.motion_sum += outputs["flow"]["mean_magnitude"]

    def close(self, end: float) -> Observation:
        return Observation(
            start=self.start,
            end=end,
            frames=self.frames,
            detections=dict(self.detections),
            poses=self.poses,
            texts=tuple(self.texts),
            motion_frames=self.motion_frames,
            motion_sum=self.motion_sum,
        )
