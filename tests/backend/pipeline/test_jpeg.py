"""JPEG frame validation and decoding."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from backend.pipeline.jpeg import FrameLimits, FrameRejectedError, decode_jpeg, jpeg_size

LIMITS = FrameLimits()


def encode(image: NDArray[np.uint8], *params: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, list(params))
    assert ok
    return encoded.tobytes()


def with_size(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its SOF0 header claiming another width and height."""
    sof = data.index(b"\xff\xc0")
    size = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return data[: sof + 5] + size + data[sof + 9 :]


def test_decodes_a_colour_jpeg_to_bgr(texture: NDArray[np.uint8], sample_jpeg: bytes) -> None:
    image = decode_jpeg(sample_jpeg, LIMITS)
    assert image.shape == (240, 320, 3)
    assert image.dtype == np.uint8
    error = np.abs(image.astype(np.int16) - texture[:240, :320].astype(np.int16))
    assert error.mean() < 4  # lossy, but the same image in the same channel order


def test_grayscale_jpeg_comes_back_with_three_equal_channels(
    texture: NDArray[np.uint8],
) -> None:
    gray = np.asarray(cv2.cvtColor(texture[:100, :150], cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    image = decode_jpeg(encode(gray), LIMITS)
    assert image.shape == (100, 150, 3)
    assert np.array_equal(image[..., 0], image[..., 1])
    assert np.array_equal(image[..., 1], image[..., 2])


def test_reads_progressive_jpeg_size(texture: NDArray[np.uint8]) -> None:
    data = encode(texture[:123, :321], cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    assert jpeg_size(data) == (321, 123)
    assert decode_jpeg(data, LIMITS).shape == (123, 321, 3)


def test_accepts_zero_padding_after_the_end_marker(sample_jpeg: bytes) -> None:
    assert decode_jpeg(sample_jpeg + bytes(64), LIMITS).shape == (240, 320, 3)


def test_truncated_jpeg_is_caught_by_the_end_marker_check(sample_jpeg: bytes) -> None:
    with pytest.raises(FrameRejectedError) as caught:
        decode_jpeg(sample_jpeg[: len(sample_jpeg) * 2 // 3], LIMITS)
    assert caught.value.code == "corrupt_jpeg"
    assert "FFD9" in str(caught.value)  # refused before OpenCV, whose behaviour varies


BadFrame = Callable[[bytes], bytes]


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda jpeg: b"", "empty_frame"),
        (lambda jpeg: b"\x89PNG\r\n\x1a\n" + jpeg[2:], "not_jpeg"),
        (lambda jpeg: jpeg[1:], "not_jpeg"),
        (lambda jpeg: b"\xff\xd8\xff\xd9", "corrupt_jpeg"),
        (lambda jpeg: b"\xff\xd8" + b"\x12" * 100 + b"\xff\xd9", "corrupt_jpeg"),
        (lambda jpeg: b"\xff\xd8\xff\xe0\x00\x04ab\xff\xd9", "corrupt_jpeg"),
        (lambda jpeg: b"\xff\xd8\xff\xe0\x7f\xff" + jpeg[2:100], "corrupt_jpeg"),
        (lambda jpeg: jpeg + b"trailing", "corrupt_jpeg"),
        (lambda jpeg: with_size(jpeg, 0, 240), "corrupt_jpeg"),
    ],
    ids=[
        "empty",
        "png",
        "no-soi",
        "soi-eoi-only",
        "garbage-after-soi",
        "no-frame-header",
        "segment-past-the-end",
        "trailing-garbage",
        "zero-width",
    ],
)
def test_rejects_bad_frames_with_a_code(make: BadFrame, code: str, sample_jpeg: bytes) -> None:
    with pytest.raises(FrameRejectedError) as caught:
        decode_jpeg(make(sample_jpeg), LIMITS)
    assert caught.value.code == code
    assert "; " in str(caught.value)  # what was wrong; what to do


def test_byte_limit_is_checked_first(sample_jpeg: bytes) -> None:
    limits = FrameLimits(max_bytes=len(sample_jpeg))
    assert decode_jpeg(sample_jpeg, limits).shape == (240, 320, 3)
    for data in (sample_jpeg + b"\x00", b"not a jpeg at all" * 10_000):
        with pytest.raises(FrameRejectedError) as caught:
            decode_jpeg(data, limits)
        assert caught.value.code == "frame_too_large"
        assert f"{len(sample_jpeg):,} byte limit" in str(caught.value)


def test_pixel_limit_is_inclusive(sample_jpeg: bytes) -> None:
    assert decode_jpeg(sample_jpeg, FrameLimits(max_pixels=320 * 240)).shape == (240, 320, 3)
    with pytest.raises(FrameRejectedError) as caught:
        decode_jpeg(sample_jpeg, FrameLimits(max_pixels=320 * 240 - 1))
    assert caught.value.code == "frame_too_many_pixels"


def test_pixel_bomb_is_rejected_from_its_header(sample_jpeg: bytes) -> None:
    bomb = with_size(sample_jpeg, 60_000, 60_000)
    with pytest.raises(FrameRejectedError) as caught:
        decode_jpeg(bomb[:400], LIMITS)  # the header alone is enough to refuse it
    assert caught.value.code == "frame_too_many_pixels"
    assert "60000x60000" in str(caught.value)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_soi_only_raise_frame_rejected(tail: bytes) -> None:
    try:
        image = decode_jpeg(b"\xff\xd8" + tail, LIMITS)
    except FrameRejectedError as rejected:
        assert rejected.code in ("corrupt_jpeg", "frame_too_many_pixels")
    else:
        assert image.ndim == 3


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=1, max_value=2000))
def test_every_truncation_is_rejected(cut: int, sample_jpeg: bytes) -> None:
    with pytest.raises(FrameRejectedError) as caught:
        decode_jpeg(sample_jpeg[: len(sample_jpeg) - cut], LIMITS)
    assert caught.value.code == "corrupt_jpeg"
