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
from backend.protocol.error_codes import ErrorCode
from tests.backend.pipeline.hostile_jpegs import exif_rotated_jpeg, progressive_jpeg, scan_bomb

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
    assert caught.value.code == ErrorCode.CORRUPT_JPEG
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
        assert caught.value.code == ErrorCode.FRAME_TOO_LARGE
        assert f"{len(sample_jpeg):,} byte limit" in str(caught.value)


def test_pixel_limit_is_inclusive(sample_jpeg: bytes) -> None:
    assert decode_jpeg(sample_jpeg, FrameLimits(max_pixels=320 * 240)).shape == (240, 320, 3)
    with pytest.raises(FrameRejectedError) as caught:
        decode_jpeg(sample_jpeg, FrameLimits(max_pixels=320 * 240 - 1))
    assert caught.value.code == ErrorCode.FRAME_TOO_MANY_PIXELS


def test_pixel_bomb_is_rejected_from_its_header(sample_jpeg: bytes) -> None:
    bomb = with_size(sample_jpeg, 60_000, 60_000)
    with pytest.raises(FrameRejectedError) as caught:
        decode_jpeg(bomb[:400], LIMITS)  # the header alone is enough to refuse it
    assert caught.value.code == ErrorCode.FRAME_TOO_MANY_PIXELS
    assert "60000x60000" in str(caught.value)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_soi_only_raise_frame_rejected(tail: bytes) -> None:
    try:
        image = decode_jpeg(b"\xff\xd8" + tail, LIMITS)
    except FrameRejectedError as rejected:
        assert rejected.code in ("corrupt_jpeg", "frame_too_many_pixels", "frame_too_complex")
    else:
        assert image.ndim == 3


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=1, max_value=2000))
def test_every_truncation_is_rejected(cut: int, sample_jpeg: bytes) -> None:
    with pytest.raises(FrameRejectedError) as caught:
        decode_jpeg(sample_jpeg[: len(sample_jpeg) - cut], LIMITS)
    assert caught.value.code == ErrorCode.CORRUPT_JPEG


def test_decodes_a_standard_progressive_jpeg_from_pil() -> None:
    data = progressive_jpeg(320, 240)
    assert data.count(b"\xff\xda") == 10  # libjpeg's progressive script
    assert decode_jpeg(data, LIMITS).shape == (240, 320, 3)


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if the pixels are decoded at all: a guard must refuse from the markers alone."""

    def refuse(*_: object) -> None:
        raise AssertionError("cv2.imdecode ran on a frame the marker check should refuse")

    monkeypatch.setattr(cv2, "imdecode", refuse)


@pytest.mark.usefixtures("no_decoding")
def test_scan_bomb_is_refused_before_decoding() -> None:
    bomb = scan_bomb(320, 240, scans=2000)  # 25 KB; about 0.3 s to decode without the guard
    with pytest.raises(FrameRejectedError) as caught:
        decode_jpeg(bomb, LIMITS)
    assert caught.value.code == ErrorCode.FRAME_TOO_COMPLEX
    assert "over 100 scans" in str(caught.value)


@pytest.mark.usefixtures("no_decoding")
def test_full_size_scan_bomb_is_refused_before_decoding() -> None:
    """The attack as found: under 2 MB, 1920x1080, ~165k scans (minutes of CPU to decode)."""
    bomb = scan_bomb(1920, 1080, scans=165_000)
    assert len(bomb) <= LIMITS.max_bytes
    assert jpeg_size(bomb) == (1920, 1080)
    with pytest.raises(FrameRejectedError) as caught:
        decode_jpeg(bomb, LIMITS)
    assert caught.value.code == ErrorCode.FRAME_TOO_COMPLEX


def test_scan_limit_is_inclusive() -> None:
    limits = FrameLimits(max_scans=40)
    assert decode_jpeg(scan_bomb(64, 48, scans=40), limits).shape == (48, 64, 3)
    with pytest.raises(FrameRejectedError) as caught:
        decode_jpeg(scan_bomb(64, 48, scans=41), limits)
    assert caught.value.code == ErrorCode.FRAME_TOO_COMPLEX


@pytest.mark.usefixtures("no_decoding")
def test_full_size_image_with_many_legal_scans_is_refused_before_decoding() -> None:
    """Under the scan limit but 1920x1080: pixels times scans is what bounds the cost."""
    costly = scan_bomb(1920, 1080, scans=60)
    with pytest.raises(FrameRejectedError) as caught:
        decode_jpeg(costly, LIMITS)
    assert caught.value.code == ErrorCode.FRAME_TOO_COMPLEX
    assert "60 scans at 1920x1080" in str(caught.value)


def test_pixel_scan_budget_is_inclusive() -> None:
    limits = FrameLimits(max_pixel_scans=64 * 48 * 12)
    assert decode_jpeg(scan_bomb(64, 48, scans=12), limits).shape == (48, 64, 3)
    with pytest.raises(FrameRejectedError) as caught:
        decode_jpeg(scan_bomb(64, 48, scans=13), limits)
    assert caught.value.code == ErrorCode.FRAME_TOO_COMPLEX


def test_standard_progressive_full_size_frame_is_decoded() -> None:
    assert decode_jpeg(progressive_jpeg(1920, 1080), LIMITS).shape == (1080, 1920, 3)


def test_too_many_segments_are_refused(sample_jpeg: bytes) -> None:
    comments = b"\xff\xfe\x00\x03x" * 1000  # 1000 COM segments, plus the image's own
    with pytest.raises(FrameRejectedError) as caught:
        decode_jpeg(sample_jpeg[:2] + comments + sample_jpeg[2:], LIMITS)
    assert caught.value.code == ErrorCode.FRAME_TOO_COMPLEX
    assert "marker segments" in str(caught.value)
    assert decode_jpeg(sample_jpeg[:2] + comments[:500] + sample_jpeg[2:], LIMITS).shape == (
        240,
        320,
        3,
    )


def test_unsupported_marker_is_corrupt(sample_jpeg: bytes) -> None:
    jpeg_ls = b"\xff\xf7\x00\x04ab"  # SOF55 (JPEG-LS): libjpeg cannot decode it
    with pytest.raises(FrameRejectedError) as caught:
        decode_jpeg(sample_jpeg[:2] + jpeg_ls + sample_jpeg[2:], LIMITS)
    assert caught.value.code == ErrorCode.CORRUPT_JPEG
    assert "FFF7" in str(caught.value)


@pytest.mark.parametrize(
    "tail",
    [b"trailing", b"\xff\xd9\xff\xda garbage", b"\xff" * 10, b"\x00" * 3 + b"\xff\xd8\xff"],
    ids=["text", "markers", "fill", "second-soi"],
)
def test_accepts_bytes_after_the_end_marker(sample_jpeg: bytes, tail: bytes) -> None:
    assert decode_jpeg(sample_jpeg + tail, LIMITS).shape == (240, 320, 3)


def test_accepts_a_second_image_after_the_first(sample_jpeg: bytes) -> None:
    """Cameras append a preview after EOI (MPF); the first image is the frame."""
    second = progressive_jpeg(64, 48)
    assert decode_jpeg(sample_jpeg + second, LIMITS).shape == (240, 320, 3)


def test_exif_orientation_is_ignored() -> None:
    """The frame is decoded as stored: its size is the header's, its top half stays on top."""
    data = exif_rotated_jpeg(200, 100, orientation=6)
    assert jpeg_size(data) == (200, 100)
    image = decode_jpeg(data, LIMITS)
    assert image.shape == (100, 200, 3)
    assert image[:40, :, 2].mean() > 200 and image[60:, :, 2].mean() < 50  # BGR: red on top
