"""Validate an LLM answer against the strict format and the observation it summarises.

Each line must be one of the template's sentences for this observation, except that a
detection or pose count may be lower (it says "at least"). Anything else (prose, invented
labels or texts, inflated counts, a changed motion level) makes the whole answer malformed,
and the caller sends the template text instead.
"""

from __future__ import annotations

import re

from backend.summaries.observations import Observation
from backend.summaries.template import (
    detection_sentence,
    pose_sentence,
    template_sentences,
)

MAX_SUMMARY_CHARS = 4000
_DETECTION = re.compile(r"An? (?P<label>.+) was detected at least (?P<count>\d+) times?\.")
_POSE = re.compile(r"A pose was estimated at least (?P<count>\d+) times?\.")


def summary_problem(answer: str, observation: Observation) -> str | None:
    """Why `answer` is not an acceptable summary of `observation`, or None when it is."""
    if len(answer) > MAX_SUMMARY_CHARS:
        return f"longer than {MAX_SUMMARY_CHARS} characters"
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    if not lines:
        return "empty"
    if len(set(lines)) != len(lines):
        return "repeats a sentence"
    exact = set(template_sentences(observation))
    for line in lines:
        if line not in exact and not _weaker_count(line, observation):
            return f"unsupported sentence: {line[:120]!r}"
    return None


def _weaker_count(line: str, observation: Observation) -> bool:
    """A detection or pose sentence with a lower, still positive, count than observed."""
    if match := _DETECTION.fullmatch(line):
        label, count = match["label"], int(match["count"])
        observed = observation.detections.get(label, 0)
        return 1 <= count <= observed and line == detection_sentence(label, count)
    if match := _POSE.fullmatch(line):
        count = int(match["count"])
        return 1 <= count <= observation.poses and line == pose_sentence(count)
    return False
