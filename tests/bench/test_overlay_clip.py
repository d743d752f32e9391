"""The overlay benchmark's clip, exact detector and error measure, without a browser."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from backend.bench import overlay_clip as clip
from backend.bench.overlay_detector import write_overlay_models
from backend.bench.overlay_report import edge_error, interpolation_floor, measure, verdict
from backend.bench.overlay_runner import OverlayOptions, parse_modes, parse_rates
from backend.inference.onnx_detector import OnnxDetector
from backend.pipeline.letterbox import letterbox
from backend.pipeline.yolo_decode import decode_yolo


def jpeg_round_trip(image: NDArray[np.uint8], quality: int) -> NDArray[np.uint8]:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR).astype(np.uint8)
    return decoded


def test_objects_stay_apart_inside_the_scene_and_loop_without_a_jump() -> None:
    for frame in range(clip.FRAMES + 1):
        boxes = list(clip.truth(frame).values())
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= clip.WIDTH and clip.SCENE_TOP <= y1 < y2 <= clip.HEIGHT
        for a, b in itertools.combinations(boxes, 2):
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], frame
    assert clip.truth(clip.FRAMES) == clip.truth(0)
    for obj in clip.OBJECTS:
        steps = [np.subtract(obj.box_at(f + 1)[:2], obj.box_at(f)[:2]) for f in range(clip.FRAMES)]
        speeds = {round(float(np.hypot(*step))) for step in steps}
        assert 0 in speeds and len(speeds) >= 3, f"{obj.label}: needs pauses and speed changes"
        turns = sum(
            1 for a, b in itertools.pairwise(steps) if a.any() and b.any() and np.dot(a, b) <= 0
        )
        assert turns >= 1, f"{obj.label}: needs a reversal or a turn"


@pytest.mark.parametrize("quality", [70, 90])
def test_every_frame_code_reads_back_after_jpeg(quality: int) -> None:
    for frame in range(clip.FRAMES):
        assert clip.decode_code(jpeg_round_trip(clip.render_frame(frame), quality)) == frame


def test_a_picture_without_the_strip_has_no_code() -> None:
    grey = np.full((clip.HEIGHT, clip.WIDTH, 3), 128, np.uint8)
    assert clip.decode_code(grey) is None


@pytest.fixture(scope="module")
def overlay_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models_dir = tmp_path_factory.mktemp("overlay-models")
    write_overlay_models(models_dir)
    return models_dir


@pytest.mark.parametrize("quality", [70, 90])
def test_the_exact_detector_finds_the_true_boxes_through_the_backends_letterbox(
    overlay_models: Path, quality: int
) -> None:
    detector = OnnxDetector.prepared(overlay_models, "yolo")
    assert detector.entry.class_names == clip.LABELS
    worst = 0.0
    for frame in range(0, clip.FRAMES, 9):
        picture = jpeg_round_trip(clip.render_frame(frame), quality)
        tensor, placement = letterbox(picture, detector.contract.input_size)
        found = decode_yolo(
            detector.run(tensor),
            output_format="yolo_raw",
            num_classes=len(clip.LABELS),
            letterbox=placement,
        )
        boxes = {clip.LABELS[c]: box for box, c in zip(found.boxes, found.classes, strict=True)}
        assert sorted(boxes) == sorted(clip.LABELS), f"frame {frame}: found {sorted(boxes)}"
        for label, true in clip.truth(frame).items():
            worst = max(worst, float(np.abs(np.subtract(boxes[label], true)).max()))
    assert worst <= 1.0, f"an edge was {worst} px off"


def test_the_exact_detector_finds_nothing_on_an_empty_scene(overlay_models: Path) -> None:
    detector = OnnxDetector.prepared(overlay_models, "yolo")
    tensor, placement = letterbox(np.full((480, 640, 3), 128, np.uint8), 640)
    found = decode_yolo(
        detector.run(tensor), output_format="yolo_raw", num_classes=3, letterbox=placement
    )
    assert len(found) == 0
    pose = OnnxDetector.prepared(overlay_models, "yolo_pose")
    assert not pose.run(tensor).any(), "the pose model finds nobody"


def test_errors_are_measured_per_object_and_unreadable_codes_counted() -> None:
    true = clip.truth(10)
    drawn = [
        {"box": [x1 + 2, y1, x2 + 2, y2], "label": label, "trackId": 1}
        for label, (x1, y1, x2, y2) in true.items()
    ]
    held = [{"box": list(true["car"]), "label": "car", "trackId": 1}]
    rendered: list[dict[str, Any]] = [
        {"probe": 10, "boxes": drawn, "held": held},
        {"probe": None, "boxes": drawn, "held": held},
        {"probe": 10, "boxes": drawn[:1], "held": held},
    ]
    run = measure("live", 5, 4.9, rendered)
    assert (run.rendered, run.unreadable, run.measured) == (3, 1, 2)
    assert run.drawn.errors == (1.0,) * 4, "two edges 2 px off: a mean of 1 px"
    assert run.drawn.frames_missing == 1 and run.missed_share == 0.5
    assert run.held.errors == (0.0, 0.0) and run.held.frames_missing == 2
    assert edge_error([0, 0, 10, 10], (1, 2, 13, 14)) == 2.5
    assert verdict(run) == "misses", "worse than the unmoved baseline"


def test_the_interpolation_floor_is_zero_with_a_result_per_frame_and_grows_below() -> None:
    assert set(interpolation_floor(30, phases=1).errors) == {0.0}
    slow, fast = interpolation_floor(2), interpolation_floor(15)
    assert (slow.percentile(90) or 0) > (fast.percentile(90) or 0) > 0


def test_bench_options_are_validated() -> None:
    assert parse_rates("2,5,15") == (2.0, 5.0, 15.0)
    assert parse_modes("sync,live") == ("sync", "live")
    for bad in ("", "2,x", "0", "-1"):
        with pytest.raises(ValueError, match="--rates"):
            parse_rates(bad)
    with pytest.raises(ValueError, match="--modes"):
        parse_modes("sync,fast")
    with pytest.raises(ValueError, match=r"no index\.html"):
        OverlayOptions(page_dir=Path("/nonexistent"))
