"""Fixtures for the pipeline tests: a textured image, JPEG samples and the reference photo."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray


@pytest.fixture(scope="session")
def texture() -> NDArray[np.uint8]:
    """A 600x800 BGR image of smooth random colour blobs: trackable by optical flow."""
    noise = np.random.default_rng(7).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    return np.asarray(cv2.GaussianBlur(noise, (0, 0), 2.0), dtype=np.uint8)


@pytest.fixture(scope="session")
def sample_jpeg(texture: NDArray[np.uint8]) -> bytes:
    """A valid 320x240 baseline colour JPEG."""
    ok, encoded = cv2.imencode(".jpg", texture[:240, :320], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()


@pytest.fixture(scope="session")
def bus_photo() -> bytes:
    """ultralytics' bus.jpg, a real 810x1080 photo shipped inside its wheel."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ultralytics (the optional model export tool) is not installed")
    return (Path(spec.submodule_search_locations[0]) / "assets" / "bus.jpg").read_bytes()


@pytest.fixture(scope="session")
def ultralytics_letterbox(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[NDArray[np.uint8], int], NDArray[np.uint8]]:
    """ultralytics' own LetterBox (the preprocessing YOLO is trained with), as a reference."""
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics (the optional model export tool) is not installed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics")))
        patch.setenv("YOLO_OFFLINE", "1")
        patch.setenv("YOLO_AUTOINSTALL", "0")
        patch.setenv("YOLO_VERBOSE", "0")
        from ultralytics.data.augment import LetterBox  # noqa: PLC0415

    def apply(image: NDArray[np.uint8], size: int) -> NDArray[np.uint8]:
        transform: Any = LetterBox((size, size), auto=False, scaleup=True)
        return np.asarray(transform(image=image), dtype=np.uint8)

    return apply
