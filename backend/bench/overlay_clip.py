"""The overlay benchmark's clip: a frame code on every frame and objects at known positions.

640x480 at 30 fps, 6 s, looping without a jump (every path ends where it starts). The top
strip carries the frame's index as 8 bits, each drawn as a 40x32 block beside its complement
(16 blocks): a pair whose two blocks do not clearly differ makes the code unreadable instead of
wrong. Below it, on plain grey, three solid rectangles move along piecewise-linear paths with
changes of speed, turns, reversals and pauses, never overlapping each other or the strip.
Their boxes per frame are the truth the page's drawn boxes are compared with; the camera
picture is drawn on the page's canvas at 640x480, so frame pixels are canvas pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

WIDTH, HEIGHT = 640, 480
FPS = 30
FRAMES = 180
BACKGROUND = (128, 128, 128)  # RGB
CODE_BITS = 8
BLOCK_WIDTH = WIDTH // (2 * CODE_BITS)
STRIP_HEIGHT = 32
SCENE_TOP = 48  # objects stay below this row

Box = tuple[int, int, int, int]  # x1, y1, x2, y2: the rectangle covers [x1, x2) x [y1, y2)


@dataclass(frozen=True)
class ClipObject:
    """A solid rectangle of one colour: the detector reports it as class `label`."""

    label: str
    rgb: tuple[int, int, int]
    size: tuple[int, int]  # width, height
    keyframes: tuple[tuple[int, int, int], ...]

    def box_at(self, frame: int) -> Box:
        """The rectangle in frame `frame` (even coordinates: 4:2:0 chroma never straddles)."""
        frames = [key[0] for key in self.keyframes]
        x = float(np.interp(frame, frames, [key[1] for key in self.keyframes]))
        y = float(np.interp(frame, frames, [key[2] for key in self.keyframes]))
        left, top = 2 * round(x / 2), 2 * round(y / 2)
        return (left, top, left + self.size[0], top + self.size[1])


# Keyframes (frame, x, y of the top-left corner); each path ends where it starts.
OBJECTS = (
    # walks right, pauses, down, left, then back up diagonally
    ClipObject("person", (220, 40, 40), (40, 96), (
        (0, 20, 60), (30, 200, 60), (45, 200, 60), (60, 200, 150), (100, 40, 150),
        (130, 120, 100), (180, 20, 60))),
    # fast right, pause, turns, then a long fast run back
    ClipObject("car", (40, 200, 40), (120, 56), (
        (0, 40, 380), (50, 480, 380), (60, 480, 380), (90, 300, 320), (120, 300, 410),
        (150, 500, 410), (180, 40, 380))),
    # ping-pong with a reversal, down, diagonal, a pause
    ClipObject("sports ball", (40, 60, 230), (48, 48), (
        (0, 560, 80), (20, 400, 80), (40, 560, 80), (70, 560, 220), (110, 380, 160),
        (140, 380, 160), (180, 560, 80))),
)  # fmt: skip
LABELS = tuple(obj.label for obj in OBJECTS)


def truth(frame: int) -> dict[str, Box]:
    """Each object's box in frame `frame` (the frame code), in canvas pixels."""
    return {obj.label: obj.box_at(frame % FRAMES) for obj in OBJECTS}


def render_frame(frame: int) -> NDArray[np.uint8]:
    """Frame `frame` as a BGR image: code strip, grey scene, the objects."""
    image = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    image[:] = BACKGROUND[::-1]
    image[:STRIP_HEIGHT] = 0
    for bit in range(CODE_BITS):
        one = (frame >> (CODE_BITS - 1 - bit)) & 1
        block = 2 * bit + (0 if one else 1)  # the white block of the pair: first for a 1
        image[:STRIP_HEIGHT, block * BLOCK_WIDTH : (block + 1) * BLOCK_WIDTH] = 255
    for obj in OBJECTS:
        x1, y1, x2, y2 = obj.box_at(frame)
        image[y1:y2, x1:x2] = obj.rgb[::-1]
    return image


def decode_code(image_bgr: NDArray[np.uint8]) -> int | None:
    """The frame code of a picture, or None when unreadable (the page's probe, in Python)."""
    grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    row = grey[STRIP_HEIGHT // 2 - 6 : STRIP_HEIGHT // 2 + 6]
    levels = [
        float(row[:, k * BLOCK_WIDTH + 12 : (k + 1) * BLOCK_WIDTH - 12].mean())
        for k in range(2 * CODE_BITS)
    ]
    code = 0
    for bit in range(CODE_BITS):
        first, second = levels[2 * bit], levels[2 * bit + 1]
        if abs(first - second) < 64:
            return None
        code = (code << 1) | int(first > second)
    return code if code < FRAMES else None


def write_y4m(path: Path) -> Path:
    """The clip as a Y4M file for Chromium's `--use-file-for-fake-video-capture` (~83 MB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in range(FRAMES):
            yuv = cv2.cvtColor(render_frame(frame), cv2.COLOR_BGR2YUV_I420)
            out.write(b"FRAME\n" + yuv.tobytes())
    return path


def probe_script() -> str:
    """`window.cvstack.probe`: decodes the frame code from the canvas (null when unreadable),
    the same way as `decode_code`."""
    return f"""(ctx) => {{
  const bits = {CODE_BITS}, block = {BLOCK_WIDTH}, frames = {FRAMES};
  const rows = ctx.getImageData(0, {STRIP_HEIGHT // 2 - 6}, {WIDTH}, 12).data;
  const level = (k) => {{
    let sum = 0, count = 0;
    for (let y = 0; y < 12; y += 1) {{
      for (let x = k * block + 12; x < (k + 1) * block - 12; x += 1) {{
        const i = 4 * (y * {WIDTH} + x);
        sum += 0.299 * rows[i] + 0.587 * rows[i + 1] + 0.114 * rows[i + 2];
        count += 1;
      }}
    }}
    return sum / count;
  }};
  let code = 0;
  for (let bit = 0; bit < bits; bit += 1) {{
    const first = level(2 * bit), second = level(2 * bit + 1);
    if (Math.abs(first - second) < 64) return null;
    code = code * 2 + (first > second ? 1 : 0);
  }}
  return code < frames ? code : null;
}}"""
