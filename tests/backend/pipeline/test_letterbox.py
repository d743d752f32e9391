"""Letterbox preprocessing and the mapping of model coordinates back to the frame."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray

from backend.pipeline.letterbox import Letterbox, letterbox

SHAPES = [(640, 480), (480, 640), (1920, 1080), (100, 50), (33, 200), (320, 320), (7, 5)]


def frame(width: int, height: int, texture: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """A textured frame of any size (the texture is tiled when the frame is larger)."""
    tiled = np.tile(texture, (height // texture.shape[0] + 1, width // texture.shape[1] + 1, 1))
    return np.ascontiguousarray(tiled[:height, :width])


@pytest.mark.parametrize(("width", "height"), SHAPES)
@pytest.mark.parametrize("size", [320, 640])
def test_matches_ultralytics_letterbox(
    width: int,
    height: int,
    size: int,
    texture: NDArray[np.uint8],
    ultralytics_letterbox: Callable[[NDArray[np.uint8], int], NDArray[np.uint8]],
) -> None:
    image = frame(width, height, texture)
    tensor, _ = letterbox(image, size)
    reference = ultralytics_letterbox(image, size)  # BGR uint8 with grey 114 padding
    expected = reference[..., ::-1].transpose(2, 0, 1)[None]
    assert tensor.shape == (1, 3, size, size)
    assert tensor.dtype == np.uint8
    assert np.array_equal(tensor, expected)


def test_tensor_is_rgb_with_grey_padding() -> None:
    blue = np.zeros((240, 320, 3), dtype=np.uint8)
    blue[..., 0] = 255
    tensor, placement = letterbox(blue, 320)
    assert (placement.pad_x, placement.pad_y) == (0, 40)
    content = tensor[0, :, 40:280]
    assert np.all(content[2] == 255)
    assert np.all(content[:2] == 0)
    assert np.all(tensor[0, :, :40] == 114)
    assert np.all(tensor[0, :, 280:] == 114)


@pytest.mark.parametrize(
    ("width", "height", "size", "expected"),
    [
        (640, 480, 320, Letterbox(0.5, 0, 40, 320, 640, 480)),
        (480, 640, 320, Letterbox(0.5, 40, 0, 320, 480, 640)),
        (100, 50, 320, Letterbox(3.2, 0, 80, 320, 100, 50)),
        (320, 320, 320, Letterbox(1.0, 0, 0, 320, 320, 320)),
    ],
)
def test_placement(width: int, height: int, size: int, expected: Letterbox) -> None:
    _, placement = letterbox(np.zeros((height, width, 3), dtype=np.uint8), size)
    assert placement == expected


@pytest.mark.parametrize(("width", "height"), SHAPES)
def test_boxes_to_original_inverts_the_forward_mapping(width: int, height: int) -> None:
    _, placement = letterbox(np.zeros((height, width, 3), dtype=np.uint8), 320)
    rng = np.random.default_rng(width * height)
    corners = rng.uniform(0, [width, height], size=(50, 2, 2))
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    pad = np.array([placement.pad_x, placement.pad_y] * 2)
    forward = (boxes * placement.scale + pad).astype(np.float32)
    back = placement.boxes_to_original(forward)
    assert back.dtype == np.float32
    assert np.abs(back - boxes).max() < 1e-3


@pytest.mark.parametrize(("width", "height"), SHAPES[:5])
def test_mapping_agrees_with_the_image_content(width: int, height: int) -> None:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    box = np.array([width * 0.2, height * 0.3, width * 0.7, height * 0.9])
    x1, y1, x2, y2 = np.round(box).astype(int)
    image[y1:y2, x1:x2] = 255
    tensor, placement = letterbox(image, 320)
    rows, cols = np.nonzero(tensor[0, 0] > 127)
    found = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float32)
    back = placement.boxes_to_original(found)
    tolerance = 1 / placement.scale + 1  # a pixel of the input, plus resampling at the edge
    assert np.abs(back - [x1, y1, x2, y2]).max() <= tolerance


def test_results_are_clipped_to_the_frame() -> None:
    placement = Letterbox(0.5, 0, 40, 320, 640, 480)
    boxes = placement.boxes_to_original([[-10, 0, 330, 20], [10, 290, 20, 320]])
    assert np.array_equal(boxes, [[0, 0, 640, 0], [20, 480, 40, 480]])
    points = placement.points_to_original(np.full((2, 17, 2), 400.0))
    assert points.shape == (2, 17, 2)
    assert np.all(points == [640, 480])


@pytest.mark.parametrize("shape", [(240, 320), (240, 320, 4), (0, 320, 3)])
def test_rejects_images_that_are_not_bgr(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="BGR image"):
        letterbox(np.zeros(shape, dtype=np.uint8), 320)
