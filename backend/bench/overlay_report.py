"""Overlay alignment: the page's drawn boxes against the clip's truth, and the markdown table.

Error of a box: the mean of its four edge offsets from the true box, |x1 - x1'|, |y1 - y1'|,
|x2 - x2'| and |y2 - y2'|, in canvas pixels; it grows with a shift and with a wrong size. Each
rendered frame whose code reads is compared with the truth of that code, object by object
(the label names the object): the boxes the page drew (`boxes`), and the last result's boxes
unmoved (`held`), the baseline the live mode must not be worse than.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.bench.overlay_clip import FPS, FRAMES, LABELS, Box, truth

# Targets of issue 15: the synchronised mode at every rate (median, p90 in px).
SYNC_TARGET_MEDIAN_PX = 2.0
SYNC_TARGET_P90_PX = 5.0


def edge_error(drawn: Sequence[float], true: Box) -> float:
    """The mean of the four edge offsets between a drawn box and the true one, in px."""
    return float(np.mean(np.abs(np.asarray(drawn, np.float64) - np.asarray(true, np.float64))))


@dataclass(frozen=True)
class Errors:
    """Per-object errors of one kind of box over the measured frames."""

    errors: tuple[float, ...]
    frames_missing: int  # frames where at least one object had no box

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self.errors, q)) if self.errors else None


@dataclass(frozen=True)
class OverlayRun:
    """One (mode, rate) run: what the page rendered, measured against the truth."""

    mode: str
    rate: float  # the backend's cap, results/s
    results_per_s: float  # what the page received
    rendered: int  # frames the page rendered while collecting
    unreadable: int  # of those, frames whose code did not read: not measured
    drawn: Errors
    held: Errors
    load: float  # the machine's 1-minute load average when collection ended

    @property
    def measured(self) -> int:
        return self.rendered - self.unreadable

    @property
    def missed_share(self) -> float:
        return self.drawn.frames_missing / self.measured if self.measured else 0.0


def measure(
    mode: str,
    rate: float,
    results_per_s: float,
    rendered: Sequence[Mapping[str, Any]],
    load: float = 0.0,
) -> OverlayRun:
    """Compare every rendered frame `{probe, boxes, held}` (the page's hook) with the truth."""
    unreadable = 0
    found: dict[str, list[float]] = {"boxes": [], "held": []}
    missing = {"boxes": 0, "held": 0}
    for frame in rendered:
        code = frame.get("probe")
        if not isinstance(code, int):
            unreadable += 1
            continue
        expected = truth(code)
        for kind in found:
            errors = [_object_error(frame[kind], label, expected[label]) for label in LABELS]
            found[kind] += [error for error in errors if error is not None]
            missing[kind] += any(error is None for error in errors)
    return OverlayRun(
        mode=mode,
        rate=rate,
        results_per_s=results_per_s,
        rendered=len(rendered),
        unreadable=unreadable,
        drawn=Errors(tuple(found["boxes"]), missing["boxes"]),
        held=Errors(tuple(found["held"]), missing["held"]),
        load=load,
    )


def _object_error(boxes: Sequence[Mapping[str, Any]], label: str, true: Box) -> float | None:
    """The error of the box drawn for `label` (the closest if several); None when none was."""
    errors = [edge_error(box["box"], true) for box in boxes if box.get("label") == label]
    return min(errors) if errors else None


def interpolation_floor(rate: float, phases: int = 6) -> Errors:
    """The best an interpolating display can do on this clip at `rate` results/s: results on
    evenly spaced frames (at `phases` offsets), boxes linear in between, every frame of a loop."""
    step = FPS / rate
    errors = []
    for phase in np.arange(phases) * step / phases:
        computed = np.unique(np.round(np.arange(phase, 2 * FRAMES + 2 * step, step)).astype(int))
        for frame in range(FRAMES, 2 * FRAMES):
            after = int(np.searchsorted(computed, frame, side="right"))
            first, last = computed[after - 1], computed[after]
            weight = (frame - first) / (last - first)
            for label in LABELS:
                a, b = np.asarray(truth(first)[label]), np.asarray(truth(last)[label])
                errors.append(edge_error(list(a + (b - a) * weight), truth(frame)[label]))
    return Errors(tuple(errors), 0)


def verdict(run: OverlayRun) -> str:
    """Whether the run meets issue 15's target for its mode."""
    median, p90 = run.drawn.percentile(50), run.drawn.percentile(90)
    if median is None or p90 is None:
        return "no boxes measured"
    if run.mode == "sync":
        met = median <= SYNC_TARGET_MEDIAN_PX and p90 <= SYNC_TARGET_P90_PX
        return "meets" if met else "misses"
    held = [run.held.percentile(q) for q in (50, 90)]
    if None in held:
        return "no baseline"
    return "meets" if median <= held[0] and p90 <= held[1] else "misses"  # type: ignore[operator]


def render_markdown(runs: Sequence[OverlayRun], machine: str, skipped: Sequence[str]) -> str:
    """The report: one row per (mode, rate), then the modes the page could not run."""
    lines = [
        f"Machine: {machine}.",
        "",
        "Error: mean of the four edge offsets between a drawn box and the true box, canvas px "
        "(640x480); per rendered frame and object. Unmoved: the last result's boxes as they came. "
        "Load: the 1-minute load average as collection ended (the numbers depend on it).",
        "",
        "| mode | cap results/s | results/s received | frames rendered | unreadable codes "
        "| frames measured | median px | p90 px | max px | frames with an object missed "
        "| unmoved median px | unmoved p90 px | unmoved max px | target | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        drawn = [_px(run.drawn.percentile(q)) for q in (50, 90, 100)]
        held = [_px(run.held.percentile(q)) for q in (50, 90, 100)]
        lines.append(
            f"| {run.mode} | {run.rate:g} | {run.results_per_s:.1f} | {run.rendered} "
            f"| {run.unreadable} | {run.measured} | {' | '.join(drawn)} "
            f"| {100 * run.missed_share:.1f} % | {' | '.join(held)} | {verdict(run)} "
            f"| {run.load:.1f} |"
        )
    lines += [f"- not measured: {reason}" for reason in skipped]
    for rate in sorted({run.rate for run in runs}):
        floor = [_px(interpolation_floor(rate).percentile(q)) for q in (50, 90, 100)]
        lines.append(
            f"- ideal interpolation at {rate:g} results/s (results on evenly spaced frames, "
            f"linear in between): median {floor[0]}, p90 {floor[1]}, max {floor[2]} px"
        )
    lines.append(
        f"Targets: sync median <= {SYNC_TARGET_MEDIAN_PX:g} px and p90 <= "
        f"{SYNC_TARGET_P90_PX:g} px at every rate; live never worse than unmoved (median, p90)."
    )
    return "\n".join(lines) + "\n"


def _px(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
