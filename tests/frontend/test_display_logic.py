"""The display modes' logic, run in Node on the page's own modules (no browser needed):
interpolation between results, the frame history's bounds, the display delay, live mode's
damped and capped extrapolation."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.frontend.page_modules import run_page_module

IMPORTS = {
    "frame_history.js": "FrameHistory, HISTORY_MAX_AGE_MS",
    "result_timeline.js": "ResultTimeline",
    "display_delay.js": "DisplayDelay, DELAY_GROW_RATE, DELAY_SHRINK_RATE, DELAY_MARGIN_MS",
    "boxmotion.js": "BoxMotion, MIN_RESULT_RATE, MAX_SHIFT",
    "config.js": "loadConfig",
}
# A result as the backend sends it, with one box per `(x, track_id)` (10 px wide) and optional
# pose people `[[x1, y1, x2, y2], [[x, y, conf] x 17]]`.
HELPERS = """
const result = (boxes, people = null) => ({
  width: 320, height: 240, flow: null,
  yolo: {
    boxes: boxes.map(([x]) => [x, 10, x + 10, 50]),
    track_ids: boxes.map(([, id]) => id),
    labels: boxes.map(() => "person"), scores: boxes.map(() => 0.9),
    classes: boxes.map(() => 0), velocities: boxes.map(() => [0, 0]),
  },
  pose: people && { boxes: people.map(([box]) => box), scores: people.map(() => 0.9),
                    keypoints: people.map(([, points]) => points) },
});
const print = (value) => console.log(JSON.stringify(value));
"""


def run_module(body: str) -> Any:
    """Run `body` as an ES module in Node beside the page's modules; it prints one JSON value."""
    return run_page_module(IMPORTS, HELPERS + body)


def test_a_picture_between_two_results_gets_their_boxes_interpolated() -> None:
    scenes = run_module(
        """
        const timeline = new ResultTimeline();
        timeline.add(1000, result([[0, 1], [100, 2]]));
        timeline.add(1200, result([[40, 1], [180, 2]]));
        print([1100, 1150].map((t) => timeline.sceneAt(t).result.yolo.boxes));
        """
    )
    assert scenes[0] == [[20, 10, 30, 50], [140, 10, 150, 50]], "the midpoint is the midpoint"
    assert scenes[1] == [[30, 10, 40, 50], [160, 10, 170, 50]]


def test_a_result_on_its_own_frame_is_drawn_exactly() -> None:
    scenes = run_module(
        """
        const timeline = new ResultTimeline();
        const first = result([[0, 1]]);
        const second = result([[40, 1]]);
        timeline.add(1000, first);
        timeline.add(1200, second);
        timeline.add(1400, result([[90, 1]]));
        const at = (t) => timeline.sceneAt(t);
        print({
          first: at(1000).result === first, second: at(1200).result === second,
          heldAt: at(1200).heldAt, nextAt: at(1200).nextAt, before: at(999),
        });
        """
    )
    assert scenes["first"] and scenes["second"], "its own result, untouched"
    assert (scenes["heldAt"], scenes["nextAt"]) == (1200, 1400)
    assert scenes["before"] is None, "a picture older than every result gets no overlays"


def test_boxes_the_later_result_cannot_match_are_held_from_the_earlier_one() -> None:
    boxes = run_module(
        """
        const timeline = new ResultTimeline();
        const later = result([[40, 1], [140, -1], [260, 4], [600, 6], [410, 7]]);
        later.yolo.classes[4] = 2;
        timeline.add(1000, result([[0, 1], [100, -1], [200, 3], [400, 5]]));
        timeline.add(1200, later);
        print(timeline.sceneAt(1100).result.yolo.boxes);
        """
    )
    assert boxes[0] == [20, 10, 30, 50], "the same track: interpolated"
    assert boxes[1] == [120, 10, 130, 50], "untracked, the same class close by: interpolated"
    assert boxes[2] == [230, 10, 240, 50], "a new id for the same class close by: interpolated"
    assert boxes[3] == [400, 10, 410, 50], "only another class within 3 box sizes: held"
    assert len(boxes) == 4, "a box new in the later result waits for its own frame"


def test_nothing_is_extrapolated_past_the_newest_result() -> None:
    scenes = run_module(
        """
        const timeline = new ResultTimeline();
        const older = result([[0, 1]]);
        const newest = result([[40, 1]]);
        newest.yolo.velocities = [[40, 0]];
        timeline.add(1000, older);
        timeline.add(1200, newest);
        const later = timeline.sceneAt(1500);
        print({
          boxes: later.result.yolo.boxes,
          same: later.result === newest && later.held === newest,
          nextAt: later.nextAt,
        });
        """
    )
    assert scenes == {"boxes": [[40, 10, 50, 50]], "same": True, "nextAt": None}


def test_keypoints_are_interpolated_for_the_same_person_only() -> None:
    poses = run_module(
        """
        const points = (x, conf = 0.9) => Array.from({ length: 17 }, (_, k) => [x + k, 100, conf]);
        const shaky = points(50);
        shaky[3][2] = 0.1; // not sure in the later result: its point stays
        const timeline = new ResultTimeline();
        timeline.add(0, result([], [
          [[0, 0, 40, 200], points(10)], [[200, 0, 240, 200], points(210)],
        ]));
        timeline.add(100, result([], [
          [[300, 0, 340, 200], points(300)], [[10, 0, 50, 200], shaky],
        ]));
        const pose = timeline.sceneAt(50).result.pose;
        print({
          boxes: pose.boxes, first: pose.keypoints[0].slice(0, 4), second: pose.keypoints[1][0],
        });
        """
    )
    assert poses["boxes"][0] == [5, 0, 45, 200], "matched to the overlapping person"
    assert poses["first"] == [[30, 100, 0.9], [31, 100, 0.9], [32, 100, 0.9], [13, 100, 0.9]]
    assert poses["boxes"][1] == [200, 0, 240, 200], "nobody overlaps the second person: held"
    assert poses["second"] == [210, 100, 0.9]


def test_the_frame_history_is_bounded_by_age_and_bytes_and_releases_what_it_drops() -> None:
    history = run_module(
        """
        const released = [];
        const byAge = new FrameHistory({ maxBytes: 1e12, release: (p) => released.push(p) });
        for (let i = 0; i < 600; i++) byAge.add(i * 1000 / 60, `p${i}`, 1_228_800);
        const span = byAge.newest().capturedAt - byAge.at(0).capturedAt;
        const byBytes = new FrameHistory({ maxBytes: 10 * 1_228_800 });
        for (let i = 0; i < 50; i++) byBytes.add(i * 33, i, 1_228_800);
        const pick = new FrameHistory();
        [100, 133, 166].forEach((t, i) => pick.add(t, i, 1));
        const picked = [99, 100, 140, 166, 500].map((t) => pick.at(t).picture);
        const cleared = byBytes.size;
        byBytes.clear();
        print({ ageSize: byAge.size, span, maxAge: HISTORY_MAX_AGE_MS, released: released.length,
                firstReleased: released[0], bytesSize: cleared, bytesAfterClear: byBytes.bytes,
                sizeAfterClear: byBytes.size, picked });
        """
    )
    assert history["span"] <= history["maxAge"] < history["span"] + 1000 / 60
    assert history["ageSize"] + history["released"] == 600 and history["firstReleased"] == "p0"
    assert history["bytesSize"] == 10, "at most maxBytes of pictures"
    assert (history["sizeAfterClear"], history["bytesAfterClear"]) == (0, 0)
    assert history["picked"] == [0, 0, 1, 2, 2], "the newest at or before; else the oldest"


def test_the_display_delay_covers_round_trip_plus_interval_and_follows_a_step_gradually() -> None:
    """One frame in flight, the next captured 100 ms after a result: the need is the round trip
    plus the interval to the next frame's result (150 + 100 + 150 ms, then 450 + 100 + 450 ms
    once the round trip steps up after 40 results)."""
    trace = run_module(
        """
        const delay = new DisplayDelay();
        const out = { shown: [], target: [] };
        let now = 0, captured = 0;
        for (let k = 0; k < 100; k++) {
          const arrived = captured + (k < 40 ? 150 : 450);
          for (; now < arrived; now += 1000 / 60) out.shown.push([now, delay.at(now)]);
          delay.resultArrived(captured, arrived);
          out.target.push(delay.targetMs);
          captured = arrived + 100;
        }
        print({
          ...out, grow: DELAY_GROW_RATE, shrink: DELAY_SHRINK_RATE, margin: DELAY_MARGIN_MS,
        });
        """
    )
    targets, shown, margin = trace["target"], trace["shown"], trace["margin"]
    assert targets[0] == 0, "one result measures no bracket yet"
    assert 400 + margin <= targets[39] <= 400 + margin + 5, "covers 150 + 100 + 150 ms"
    assert targets[40] < 1000, "the first slow answer moves the target, not all the way"
    assert all(t >= 1000 for t in targets[42:]), "the new need is covered within a few results"
    assert targets[-1] <= 1000 + margin + 5, "and the cover shrinks back to the need"
    assert abs(shown[-1][1] - targets[-1]) < 1, "the delay shown reaches the target"
    for (t0, d0), (t1, d1) in itertools.pairwise(shown):
        assert -trace["shrink"] * (t1 - t0) - 1e-9 <= d1 - d0 <= trace["grow"] * (t1 - t0) + 1e-9
        assert t1 - d1 >= t0 - d0, "the display clock never runs backwards"


def test_live_mode_is_off_below_its_rate_damped_and_capped_above() -> None:
    live = run_module(
        """
        const moving = (rate, vx) => {
          const motion = new BoxMotion(1.5);
          const yolo = {
            ...result([[0, 1]]).yolo, boxes: [[100, 10, 200, 110]], velocities: [[vx, 0]],
          };
          for (let k = 0; k < 10; k++) motion.update(yolo, k * 1000 / rate);
          const last = 9 * 1000 / rate;
          const movedAt = (ms) => motion.boxesAt(last + ms).boxes[0][0] - 100;
          return { rate: motion.rate, moved: [30, 100, 1000].map(movedAt) };
        };
        print({ slow: moving(MIN_RESULT_RATE - 1, 10), fast: moving(15, 10), far: moving(15, 100),
                cap: MAX_SHIFT });
        """
    )
    assert live["slow"]["moved"] == [0, 0, 0], "off below the rate: unmoved"
    assert round(live["fast"]["rate"]) == 15
    moved = live["fast"]["moved"]
    assert moved[0] == pytest.approx(0.7 * 30 / (1000 / 15) * 10), "damped: 0.7 of the motion"
    assert moved[1] == moved[2] == pytest.approx(0.7 * 1.5 * 10), "at most 1.5 updates ahead"
    assert max(live["far"]["moved"]) == live["cap"] * 100, "at most a quarter of the box"


def test_live_mode_is_never_worse_than_unmoved_boxes_on_turning_motion() -> None:
    """A person turning every second or two (up to 600 px/s), results at 2, 5 and 15 per
    second (round trip = interval), velocities as the tracker measures them: live mode's
    boxes against the last result unmoved, per rendered frame at 60 fps."""
    errors = run_module(
        """
        const truth = (t) =>
          150 * Math.sin(2 * Math.PI * t / 1700) + 60 * Math.sin(2 * Math.PI * t / 900 + 1);
        const median = (a) => a.sort((p, q) => p - q)[a.length >> 1];
        const errorsAt = (rate) => {
          const interval = 1000 / rate;
          const motion = new BoxMotion(1.5);
          const results = [];
          let v = 0;
          for (let c = 0; c < 20000; c += interval) {
            const x = truth(c);
            if (results.length) v = 0.5 * v + 0.5 * (x - results.at(-1).x);
            results.push({ c, arrived: c + interval, x, v });
          }
          let k = -1;
          const held = [], live = [];
          for (let now = 2000; now < 19000; now += 1000 / 60) {
            while (results[k + 1].arrived <= now) {
              k += 1;
              const { x, v, c } = results[k];
              const yolo = result([[x, 1]]).yolo;
              motion.update({ ...yolo, boxes: [[x, 0, x + 400, 400]], velocities: [[v, 0]] }, c);
            }
            held.push(Math.abs(truth(now) - results[k].x));
            live.push(Math.abs(truth(now) - motion.boxesAt(now).boxes[0][0]));
          }
          return { held: median(held), live: median(live) };
        };
        print(Object.fromEntries([2, 5, 15].map((rate) => [rate, errorsAt(rate)])));
        """
    )
    for rate in ("2", "5"):
        assert errors[rate]["live"] == errors[rate]["held"], f"off at {rate} results/s"
    assert errors["15"]["live"] < 0.8 * errors["15"]["held"], errors


def test_an_unknown_display_mode_is_a_clear_configuration_error() -> None:
    outcome = run_module(
        """
        const load = (text) => loadConfig(`data:application/json,${encodeURIComponent(text)}`)
          .then((config) => config.displayMode, (error) => `error: ${error.message}`);
        const files = ['{}', '{"displayMode": "live"}', '{"displayMode": "fast"}'];
        print(await Promise.all(files.map(load)));
        """
    )
    assert outcome[:2] == ["sync", "live"]
    assert outcome[2].startswith("error: ") and outcome[2].endswith(
        'displayMode must be "sync" or "live", not "fast"'
    )
