"""OcrTrigger's rules, driven with a fake clock (plain floats)."""

from __future__ import annotations

from typing import Any

import pytest

from backend.ocr.trigger import OcrTrigger, OcrTriggerConfig

FRAME_S = 1 / 30
NO_TRACKS: dict[int, str] = {}


def observe(
    trigger: OcrTrigger,
    now: float,
    *,
    tracks: dict[int, str] = NO_TRACKS,
    motion: float | None = None,
    client: bool = False,
    busy: bool = False,
) -> str | None:
    return trigger.observe(
        now=now,
        labels_by_track=tracks,
        motion_magnitude=motion,
        client_requested=client,
        ocr_busy=busy,
    )


def test_quiet_frames_never_fire() -> None:
    trigger = OcrTrigger()

    assert [observe(trigger, i * FRAME_S, motion=0.1) for i in range(300)] == [None] * 300


def test_client_request_fires_at_once() -> None:
    trigger = OcrTrigger()

    assert observe(trigger, 0.0, client=True) == "client_request"
    assert observe(trigger, 5.0) is None


def test_client_request_within_the_interval_waits_and_is_not_lost() -> None:
    trigger = OcrTrigger(OcrTriggerConfig(min_interval_s=2.0))
    assert observe(trigger, 0.0, client=True) == "client_request"

    assert observe(trigger, 0.5, client=True) is None
    assert observe(trigger, 1.9) is None
    assert observe(trigger, 2.0) == "client_request"
    assert observe(trigger, 4.5) is None


def test_new_track_with_a_trigger_label_fires_once() -> None:
    trigger = OcrTrigger()

    assert observe(trigger, 0.0, tracks={1: "cup"}) is None
    assert observe(trigger, 0.1, tracks={1: "cup", 2: "book"}) == "new_object:book"
    assert observe(trigger, 5.0, tracks={1: "cup", 2: "book"}) is None
    assert observe(trigger, 5.1, tracks={2: "book", 3: "laptop"}) == "new_object:laptop"


def test_labels_are_configurable() -> None:
    trigger = OcrTrigger(OcrTriggerConfig(trigger_labels=frozenset({"cup"})))

    assert observe(trigger, 0.0, tracks={1: "book"}) is None
    assert observe(trigger, 0.1, tracks={1: "book", 2: "cup"}) == "new_object:cup"


def test_new_track_during_the_interval_fires_later_if_still_in_view() -> None:
    trigger = OcrTrigger(OcrTriggerConfig(min_interval_s=2.0))
    assert observe(trigger, 0.0, client=True) == "client_request"

    assert observe(trigger, 1.0, tracks={7: "tv"}) is None
    assert observe(trigger, 2.0, tracks={7: "tv"}) == "new_object:tv"


def test_new_track_that_left_during_the_interval_does_not_fire() -> None:
    trigger = OcrTrigger(OcrTriggerConfig(min_interval_s=2.0))
    assert observe(trigger, 0.0, client=True) == "client_request"

    assert observe(trigger, 1.0, tracks={7: "tv"}) is None
    assert observe(trigger, 2.5) is None


def test_one_run_covers_every_pending_event() -> None:
    trigger = OcrTrigger(OcrTriggerConfig(min_interval_s=1.0, settle_frames=1))
    assert observe(trigger, 0.0, client=True) == "client_request"
    observe(trigger, 0.1, motion=5.0)
    observe(trigger, 0.2, motion=0.1)

    assert observe(trigger, 0.5, tracks={1: "book"}, client=True) is None
    assert observe(trigger, 1.0, tracks={1: "book"}) == "client_request"
    assert observe(trigger, 2.5, tracks={1: "book"}, motion=0.1) is None


def settle_config(min_interval_s: float = 0.0, settle_frames: int = 3) -> OcrTriggerConfig:
    return OcrTriggerConfig(
        min_interval_s=min_interval_s, motion_high=2.0, motion_low=0.5, settle_frames=settle_frames
    )


def feed_motion(trigger: OcrTrigger, magnitudes: list[float | None]) -> list[str | None]:
    return [observe(trigger, i * FRAME_S, motion=m) for i, m in enumerate(magnitudes)]


def test_motion_settles_after_fast_then_still_frames() -> None:
    reasons = feed_motion(OcrTrigger(settle_config()), [0.1, 3.0, 1.0, 0.2, 0.2, 0.2, 0.2])

    assert reasons == [None, None, None, None, None, "motion_settled", None]


def test_stillness_without_fast_motion_does_not_settle() -> None:
    reasons = feed_motion(OcrTrigger(settle_config()), [1.9, 1.0, 0.2, 0.2, 0.2, 0.2])

    assert reasons == [None] * 6


def test_medium_motion_restarts_the_still_count() -> None:
    magnitudes: list[float | None] = [3.0, 0.2, 0.2, 1.0, 0.2, 0.2, 0.2]

    reasons = feed_motion(OcrTrigger(settle_config()), magnitudes)

    assert reasons == [None] * 6 + ["motion_settled"]


def test_frames_without_a_motion_estimate_are_skipped() -> None:
    magnitudes: list[float | None] = [3.0, 0.2, None, 0.2, None, 0.2]

    reasons = feed_motion(OcrTrigger(settle_config()), magnitudes)

    assert reasons == [None] * 5 + ["motion_settled"]


def test_settled_view_waits_for_the_interval_unless_it_moves_again() -> None:
    trigger = OcrTrigger(settle_config(min_interval_s=2.0, settle_frames=1))
    assert observe(trigger, 0.0, client=True) == "client_request"
    observe(trigger, 0.1, motion=3.0)
    assert observe(trigger, 0.2, motion=0.1) is None

    assert observe(trigger, 2.0, motion=0.1) == "motion_settled"

    observe(trigger, 2.1, motion=3.0)
    assert observe(trigger, 2.2, motion=0.1) is None
    assert observe(trigger, 3.0, motion=1.0) is None
    assert observe(trigger, 4.5, motion=0.1) is None


def test_everything_waits_while_ocr_is_busy() -> None:
    trigger = OcrTrigger(settle_config(settle_frames=1))
    observe(trigger, 0.0, motion=3.0)

    assert observe(trigger, 0.1, tracks={1: "book"}, motion=0.1, client=True, busy=True) is None
    assert observe(trigger, 0.2, tracks={1: "book"}, busy=True) is None
    assert observe(trigger, 0.3, tracks={1: "book"}) == "client_request"
    assert observe(trigger, 0.4, tracks={1: "book"}) is None


def test_forgotten_tracks_fire_again_when_they_return() -> None:
    trigger = OcrTrigger(OcrTriggerConfig(min_interval_s=0.0, track_ttl_s=10.0))
    assert observe(trigger, 0.0, tracks={1: "book"}) == "new_object:book"

    assert observe(trigger, 9.0, tracks={1: "book"}) is None
    assert observe(trigger, 15.0) is None
    assert observe(trigger, 19.0, tracks={1: "book"}) is None
    assert observe(trigger, 29.5, tracks={1: "book"}) == "new_object:book"


def test_track_memory_is_capped() -> None:
    trigger = OcrTrigger(OcrTriggerConfig(min_interval_s=0.0, max_tracks=3))
    for track_id in range(1000):
        assert observe(trigger, track_id * 0.01, tracks={track_id: "book"}) == "new_object:book"

    assert len(trigger._tracks) == 3
    assert observe(trigger, 10.0, tracks={999: "book"}) is None
    assert observe(trigger, 10.1, tracks={0: "book"}) == "new_object:book"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_interval_s": -1.0},
        {"motion_low": 2.0, "motion_high": 2.0},
        {"motion_low": 0.0},
        {"settle_frames": 0},
        {"max_tracks": 0},
        {"track_ttl_s": 0.0},
    ],
)
def test_config_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        OcrTriggerConfig(**kwargs)
