"""Window counts, the template's strict format, and the check that guards LLM answers."""

from __future__ import annotations

from backend.summaries.observations import Observation, WindowCounts, merge
from backend.summaries.output_check import summary_problem
from backend.summaries.template import template_summary, time_range
from tests.backend.summaries.conftest import frame_outputs


def busy_window() -> Observation:
    window = WindowCounts(start=0.0)
    window.add(frame_outputs(("person", "car", "person"), texts=("EXIT",), poses=2, motion=0.9))
    window.add(frame_outputs(("person", "umbrella"), texts=("  EXIT ", 'Say "hi"\nthere'), poses=1))
    window.add(frame_outputs((), motion=1.1))
    return window.close(end=10.0)


def test_a_window_counts_every_stage_and_keeps_texts_verbatim() -> None:
    observation = busy_window()
    assert observation.frames == 3
    assert observation.detections == {"person": 3, "car": 1, "umbrella": 1}
    assert observation.poses == 3
    assert observation.texts == ("EXIT", 'Say "hi" there')
    assert observation.mean_motion == 1.0
    assert Observation.from_json(observation.to_json()) == observation


def test_the_template_writes_the_strict_format_persons_first() -> None:
    assert template_summary(busy_window()).splitlines() == [
        "A person was detected at least 3 times.",
        "A car was detected at least 1 time.",
        "An umbrella was detected at least 1 time.",
        "A pose was estimated at least 3 times.",
        'The text "EXIT" was read.',
        'The text "Say "hi" there" was read.',
        "Motion was low (about 1.0 px per frame).",
    ]
    empty = Observation(start=0.0, end=10.0, frames=4, detections={})
    assert template_summary(empty) == "No objects were detected."
    assert time_range(Observation(start=0.0, end=70.0, frames=1, detections={})) == (
        "From 00:00:00 to 00:01:10 UTC:"
    )


def test_merging_adds_counts_and_keeps_the_order_of_texts() -> None:
    first = busy_window()
    second = Observation(start=10.0, end=20.0, frames=2, detections={"car": 4}, texts=("B",))
    merged = merge([first, second])
    assert (merged.start, merged.end, merged.frames) == (0.0, 20.0, 5)
    assert merged.detections == {"person": 3, "car": 5, "umbrella": 1}
    assert merged.texts == ("EXIT", 'Say "hi" there', "B")


def test_answers_may_choose_reorder_and_lower_counts_only() -> None:
    observation = busy_window()
    accepted = [
        template_summary(observation),
        'The text "EXIT" was read.\nA person was detected at least 2 times.',
        "  A pose was estimated at least 1 time.  \n\n",
    ]
    for answer in accepted:
        assert summary_problem(answer, observation) is None, answer
    rejected = {
        "": "empty",
        "Sure! A person was detected at least 3 times.": "unsupported",
        "A person was detected at least 4 times.": "unsupported",
        "A person was detected at least 0 times.": "unsupported",
        "A dog was detected at least 1 time.": "unsupported",
        "A umbrella was detected at least 1 time.": "unsupported",
        'The text "EXIT!" was read.': "unsupported",
        "Motion was high (about 1.0 px per frame).": "unsupported",
        "No objects were detected.": "unsupported",
        "A car was detected at least 1 time.\nA car was detected at least 1 time.": "repeats",
        "A car was detected at least 1 time.\n" * 400: "longer",
    }
    for answer, reason in rejected.items():
        problem = summary_problem(answer, observation)
        assert problem is not None and problem.startswith(reason), (answer, problem)
