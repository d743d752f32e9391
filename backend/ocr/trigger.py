"""When to run OCR: on events (a client request, a new object, the camera coming to rest).

OCR costs ~0.1-0.4 s of CPU, so it never runs per frame. `OcrTrigger` is a pure policy fed
once per frame with the frame's tracks and motion; time is passed in, so tests use plain floats.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# COCO classes that often carry text worth reading: covers, screens, signs, badges and shirts.
DEFAULT_TRIGGER_LABELS = frozenset({"book", "laptop", "tv", "cell phone", "stop sign", "person"})

CLIENT_REQUEST = "client_request"
MOTION_SETTLED = "motion_settled"
NEW_OBJECT_PREFIX = "new_object:"


@dataclass(frozen=True)
class OcrTriggerConfig:
    """The trigger's knobs; motion is the frame's mean optical flow, in pixels per frame.

    - `min_interval_s`: at least this long between two OCR runs of one session.
    - `trigger_labels`: a new track with one of these labels asks for OCR.
    - `motion_high` / `motion_low` / `settle_frames`: after a frame moving faster than
      `motion_high` (the camera was panned or the object moved), `settle_frames` consecutive
      frames slower than `motion_low` mean the view has come to rest: a sharp frame to read.
      The defaults (2.0 / 0.5 / 6) are a deliberate move followed by ~0.2 s of stillness at
      30 fps; hand shake stays under 2 px per frame.
    - `track_ttl_s` / `max_tracks`: track ids unseen for `track_ttl_s` are forgotten, and at
      most `max_tracks` are remembered (the least recently seen go first).
    """

    min_interval_s: float = 2.0
    trigger_labels: frozenset[str] = DEFAULT_TRIGGER_LABELS
    motion_high: float = 2.0
    motion_low: float = 0.5
    settle_frames: int = 6
    track_ttl_s: float = 30.0
    max_tracks: int = 256

    def __post_init__(self) -> None:
        if self.min_interval_s < 0:
            raise ValueError(f"min_interval_s must be >= 0, got {self.min_interval_s}")
        if not 0 < self.motion_low < self.motion_high:
            raise ValueError(
                f"need 0 < motion_low < motion_high, got {self.motion_low} and {self.motion_high}"
            )
        if self.settle_frames < 1:
            raise ValueError(f"settle_frames must be >= 1, got {self.settle_frames}")
        if self.track_ttl_s <= 0 or self.max_tracks < 1:
            raise ValueError("track_ttl_s must be > 0 and max_tracks >= 1")


@dataclass
class _Track:
    last_seen: float
    read: bool  # an OCR run has covered this track since it appeared


class OcrTrigger:
    """Decides, frame by frame, whether this session should run OCR now, and why.

    Events that arrive while OCR is throttled or busy stay pending and fire as soon as it is
    allowed: a client request until it fires, a new object while its track is still in view,
    a settled view until the view moves again. One run covers every pending event, since it
    reads the whole frame.
    """

    def __init__(self, config: OcrTriggerConfig | None = None) -> None:
        self.config = config or OcrTriggerConfig()
        self._last_fire: float | None = None
        self._client_pending = False
        self._tracks: OrderedDict[int, _Track] = OrderedDict()  # least recently seen first
        self._moved = False  # a fast frame since the view last settled
        self._still_frames = 0
        self._settled_pending = False

    def observe(
        self,
        *,
        now: float,
        labels_by_track: dict[int, str],
        motion_magnitude: float | None,
        client_requested: bool,
        ocr_busy: bool = False,
    ) -> str | None:
        """Feed one frame; the reason to run OCR on it now, or None.

        `motion_magnitude` None means no motion estimate for this frame (it neither settles
        nor stirs the view). Pass `ocr_busy=scheduler.busy`, after taking any finished outcome,
        so that nothing fires that the scheduler would refuse; pending events wait instead.
        """
        self._client_pending |= client_requested
        self._update_tracks(now, labels_by_track)
        if motion_magnitude is not None:
            self._update_motion(motion_magnitude)
        if ocr_busy or not self._interval_passed(now):
            return None
        reason = self._pending_reason(labels_by_track)
        if reason is not None:
            self._fire(now, labels_by_track)
        return reason

    def _update_tracks(self, now: float, labels_by_track: dict[int, str]) -> None:
        while self._tracks:
            oldest = next(iter(self._tracks.values()))
            if now - oldest.last_seen <= self.config.track_ttl_s:
                break
            self._tracks.popitem(last=False)
        for track_id in labels_by_track:
            track = self._tracks.get(track_id)
            if track is None:
                self._tracks[track_id] = _Track(last_seen=now, read=False)
            else:
                track.last_seen = now
                self._tracks.move_to_end(track_id)
        while len(self._tracks) > self.config.max_tracks:
            self._tracks.popitem(last=False)

    def _update_motion(self, magnitude: float) -> None:
        if magnitude >= self.config.motion_low:
            self._still_frames = 0
            self._settled_pending = False
            self._moved |= magnitude > self.config.motion_high
            return
        if not self._moved:
            return
        self._still_frames += 1
        if self._still_frames >= self.config.settle_frames:
            self._moved = False
            self._still_frames = 0
            self._settled_pending = True

    def _interval_passed(self, now: float) -> bool:
        return self._last_fire is None or now - self._last_fire >= self.config.min_interval_s

    def _pending_reason(self, labels_by_track: dict[int, str]) -> str | None:
        if self._client_pending:
            return CLIENT_REQUEST
        for track_id in sorted(labels_by_track):
            label = labels_by_track[track_id]
            track = self._tracks.get(track_id)  # None if over max_tracks in one frame
            if label in self.config.trigger_labels and track is not None and not track.read:
                return NEW_OBJECT_PREFIX + label
        if self._settled_pending:
            return MOTION_SETTLED
        return None

    def _fire(self, now: float, labels_by_track: dict[int, str]) -> None:
        self._last_fire = now
        self._client_pending = False
        self._settled_pending = False
        for track_id in labels_by_track:
            if (track := self._tracks.get(track_id)) is not None:
                track.read = True
