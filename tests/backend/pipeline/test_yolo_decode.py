"""Decoding YOLO outputs: thresholds, class-aware NMS, keypoints and the real export's shapes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from numpy.typing import NDArray

from backend.model_prep.manifest import (
    COCO_KEYPOINTS,
    COCO_SKELETON,
    KeypointLayout,
    load_manifest,
)
from backend.pipeline.jpeg import FrameLimits, decode_jpeg
from backend.pipeline.letterbox import Letterbox, letterbox
from backend.pipeline.yolo_decode import Detections, decode_yolo

# A 640x480 frame letterboxed to 320: original = (input - (0, 40)) * 2.
PLACEMENT = Letterbox(0.5, 0, 40, 320, 640, 480)
NUM_CLASSES = 3
TWO_POINTS = KeypointLayout(count=2, values_per_point=3, names=("a", "b"), skeleton=((0, 1),))


def raw_output(
    anchors: Sequence[tuple[tuple[float, float, float, float], int, float]],
    keypoints: Sequence[Sequence[float]] = (),
    total_anchors: int = 50,
) -> NDArray[np.float32]:
    """A raw head output: (cx, cy, w, h), class and score per anchor; other anchors empty."""
    kpt_values = len(keypoints[0]) if keypoints else 0
    output = np.zeros((4 + NUM_CLASSES + kpt_values, total_anchors), dtype=np.float32)
    for column, (box, class_id, score) in enumerate(anchors):
        output[:4, column] = box
        output[4 + class_id, column] = score
        output[4 + NUM_CLASSES :, column] = keypoints[column] if keypoints else ()
    return output


def decode_raw(output: NDArray[np.float32], **kwargs: object) -> Detections:
    return decode_yolo(
        output,
        output_format="yolo_raw",
        num_classes=NUM_CLASSES,
        letterbox=PLACEMENT,
        **kwargs,  # type: ignore[arg-type]
    )


def test_boxes_come_back_in_original_pixels() -> None:
    detections = decode_raw(raw_output([((100, 100, 50, 40), 2, 0.9)]))
    assert len(detections) == 1
    assert np.allclose(detections.boxes, [[150, 80, 250, 160]])
    assert detections.boxes.dtype == np.float32
    assert detections.scores.tolist() == pytest.approx([0.9])
    assert detections.scores.dtype == np.float32
    assert detections.classes.tolist() == [2]
    assert detections.classes.dtype == np.int64
    assert detections.keypoints is None


def test_nms_removes_same_class_duplicates_only() -> None:
    output = raw_output(
        [
            ((100, 100, 50, 40), 0, 0.80),  # kept: best of its cluster
            ((102, 101, 50, 40), 0, 0.70),  # duplicate of the first: removed
            ((101, 100, 52, 40), 1, 0.60),  # same place, other class: kept
            ((200, 200, 30, 30), 0, 0.50),  # elsewhere: kept
            ((120, 100, 50, 40), 0, 0.40),  # IoU 0.43 with the first: kept at 0.45
            ((10, 10, 8, 8), 2, 0.20),  # under the confidence threshold
        ]
    )
    detections = decode_raw(output)
    assert detections.scores.tolist() == pytest.approx([0.8, 0.6, 0.5, 0.4])
    assert detections.classes.tolist() == [0, 1, 0, 0]
    stricter = decode_raw(output, iou_threshold=0.3)
    assert stricter.scores.tolist() == pytest.approx([0.8, 0.6, 0.5])


def test_max_detections_keeps_the_best_scores() -> None:
    anchors = [((20.0 + 30 * i, 100, 20, 20), i % NUM_CLASSES, 0.3 + 0.05 * i) for i in range(10)]
    detections = decode_raw(raw_output(anchors), max_detections=3)
    assert detections.scores.tolist() == pytest.approx([0.75, 0.7, 0.65])


def test_uses_the_best_class_of_each_anchor() -> None:
    output = raw_output([((100, 100, 50, 40), 0, 0.4)])
    output[4 + 2, 0] = 0.7
    detections = decode_raw(output)
    assert detections.classes.tolist() == [2]
    assert detections.scores.tolist() == pytest.approx([0.7])


def test_pose_keypoints_are_mapped_to_original_pixels() -> None:
    output = raw_output(
        [((100, 100, 50, 40), 0, 0.9), ((250, 200, 40, 40), 0, 0.8)],
        keypoints=[[90, 90, 0.8, 110, 280, 0.3], [250, 200, 1.0, 400, 0, 0.5]],
    )
    detections = decode_raw(output, keypoints=TWO_POINTS)
    assert detections.keypoints is not None
    assert detections.keypoints.shape == (2, 2, 3)
    expected = [
        [[180, 100, 0.8], [220, 480, 0.3]],  # y=280 maps to 480, the bottom edge
        [[500, 320, 1.0], [640, 0, 0.5]],  # outside the frame: clipped
    ]
    assert np.allclose(detections.keypoints, expected)


def test_two_value_keypoints_get_full_confidence() -> None:
    layout = KeypointLayout(count=1, values_per_point=2, names=("a",), skeleton=())
    output = raw_output([((100, 100, 50, 40), 0, 0.9)], keypoints=[[100, 90]])
    detections = decode_raw(output, keypoints=layout)
    assert detections.keypoints is not None
    assert np.allclose(detections.keypoints, [[[200, 100, 1.0]]])


def test_end2end_output_is_only_thresholded() -> None:
    rows = np.array(
        [
            [50, 60, 150, 140, 0.6, 1, 100, 100, 0.9, 120, 120, 0.1],
            [52, 60, 150, 140, 0.9, 1, 10, 50, 0.5, 20, 60, 0.7],  # overlapping: kept
            [0, 0, 10, 10, 0.1, 0, 0, 0, 0, 0, 0, 0],  # under the threshold
        ],
        dtype=np.float32,
    )
    output = np.concatenate([rows, np.zeros((297, 12), dtype=np.float32)])
    detections = decode_yolo(
        output,
        output_format="yolo_end2end",
        num_classes=NUM_CLASSES,
        letterbox=PLACEMENT,
        keypoints=TWO_POINTS,
    )
    assert detections.scores.tolist() == pytest.approx([0.9, 0.6])
    assert detections.classes.tolist() == [1, 1]
    assert np.allclose(detections.boxes, [[104, 40, 300, 200], [100, 40, 300, 200]])
    assert detections.keypoints is not None
    assert np.allclose(detections.keypoints[1], [[200, 120, 0.9], [240, 160, 0.1]])


@pytest.mark.parametrize(
    ("shape", "output_format", "message"),
    [
        ((1, 7, 50), "yolo_raw", "no batch axis"),
        ((8, 50), "yolo_raw", r"expected \[7, anchors\]"),
        ((300, 7), "yolo_end2end", r"expected \[detections, 6\]"),
        ((7, 50), "ocr_det_map", "not a YOLO output format"),
    ],
)
def test_rejects_outputs_that_break_the_checked_layout(
    shape: tuple[int, ...], output_format: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        decode_yolo(
            np.zeros(shape, dtype=np.float32),
            output_format=output_format,
            num_classes=NUM_CLASSES,
            letterbox=PLACEMENT,
        )


def test_rejects_end2end_classes_beyond_the_class_count() -> None:
    output = np.array([[0, 0, 10, 10, 0.9, 5]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        decode_yolo(
            output, output_format="yolo_end2end", num_classes=NUM_CLASSES, letterbox=PLACEMENT
        )


def test_detections_reject_inconsistent_rows() -> None:
    with pytest.raises(ValueError, match="inconsistent detections"):
        Detections(
            boxes=np.zeros((2, 4), dtype=np.float32),
            scores=np.zeros(3, dtype=np.float32),
            classes=np.zeros(2, dtype=np.int64),
        )


def test_empty_detections() -> None:
    assert len(Detections.empty()) == 0
    assert Detections.empty().keypoints is None
    with_points = Detections.empty(with_keypoints=True, keypoint_count=17).keypoints
    assert with_points is not None
    assert with_points.shape == (0, 17, 3)


@pytest.mark.parametrize("model", ["yolo", "yolo_pose"])
def test_decodes_a_real_export_on_a_real_photo(
    model: str, yolo_models_dir: Path, bus_photo: bytes
) -> None:
    """Random weights: the content is meaningless, so this checks shapes, types and bounds."""
    entry = load_manifest(yolo_models_dir).entry(model)
    assert entry.input_size is not None
    session = ort.InferenceSession(
        str(yolo_models_dir / entry.file), providers=["CPUExecutionProvider"]
    )
    image = decode_jpeg(bus_photo, FrameLimits())
    tensor, placement = letterbox(image, entry.input_size)
    output = session.run(None, {entry.inputs[0].name: tensor})[0][0]
    detections = decode_yolo(
        output,
        output_format=entry.output_format,
        num_classes=len(entry.class_names),
        letterbox=placement,
        conf_threshold=0.0,  # random weights score everything near zero
        max_detections=50,
        keypoints=entry.keypoints,
    )
    height, width = image.shape[:2]
    assert 0 < len(detections) <= 50
    assert detections.boxes.dtype == np.float32
    assert np.all(detections.boxes[:, 2:] >= detections.boxes[:, :2])
    assert np.all(detections.boxes >= 0)
    assert np.all(detections.boxes[:, [0, 2]] <= width)
    assert np.all(detections.boxes[:, [1, 3]] <= height)
    assert np.all(np.diff(detections.scores) <= 0)
    assert np.all((detections.classes >= 0) & (detections.classes < len(entry.class_names)))
    if model == "yolo":
        assert detections.keypoints is None
        return
    assert entry.keypoints == KeypointLayout(17, 3, COCO_KEYPOINTS, COCO_SKELETON)
    assert detections.keypoints is not None
    assert detections.keypoints.shape == (len(detections), 17, 3)
    assert np.all(detections.keypoints[..., 0] <= width)
    assert np.all(detections.keypoints[..., 1] <= height)
    assert np.all((detections.keypoints[..., 2] >= 0) & (detections.keypoints[..., 2] <= 1))
