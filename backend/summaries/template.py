"""The strict summary format and the deterministic summariser that writes it.

One sentence per line, each stating a fact the counts support:

    A person was detected at least 12 times.
    A car was detected at least 3 times.
    A pose was estimated at least 4 times.
    The text "EXIT" was read.
    Motion was low (about 0.8 px per frame).

"No objects were detected." stands in for the detection lines when there were none. An LLM
may choose and order these sentences and lower a count ("at least"), nothing else; see
`output_check`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from backend.summaries.observations import Observation

NOTHING_DETECTED = "No objects were detected."
MOTION_LEVELS = ((0.3, "none"), (1.5, "low"), (5.0, "moderate"))  # upper bounds, px/frame


def detection_sentence(label: str, count: int) -> str:
    article = "An" if label[:1].lower() in "aeiou" else "A"
    return f"{article} {label} was detected at least {count} {_times(count)}."


def pose_sentence(count: int) -> str:
    return f"A pose was estimated at least {count} {_times(count)}."


def text_sentence(text: str) -> str:
    return f'The text "{text}" was read.'


def motion_sentence(mean_magnitude: float) -> str:
    level = next((name for bound, name in MOTION_LEVELS if mean_magnitude < bound), "high")
    return f"Motion was {level} (about {mean_magnitude:.1f} px per frame)."


def template_sentences(observation: Observation) -> list[str]:
    """Every fact of the observation, persons first, then labels by count."""
    labels = sorted(
        observation.detections.items(), key=lambda item: (item[0] != "person", -item[1], item[0])
    )
    sentences = [detection_sentence(label, count) for label, count in labels if count > 0]
    if observation.poses:
        sentences.append(pose_sentence(observation.poses))
    if not sentences:
        sentences.append(NOTHING_DETECTED)
    sentences.extend(text_sentence(text) for text in observation.texts)
    if observation.mean_motion is not None:
        sentences.append(motion_sentence(observation.mean_motion))
    return sentences


def template_summary(observation: Observation) -> str:
    return "\n".join(template_sentences(observation))


def time_range(observation: Observation) -> str:
    """The line that heads every summary: which stretch of time it covers."""
    start = datetime.fromtimestamp(observation.start, UTC)
    end = datetime.fromtimestamp(observation.end, UTC)
    return f"From {start:%H:%M:%S} to {end:%H:%M:%S} UTC:"


def _times(count: int) -> str:
    return "time" if count == 1 else "times"
