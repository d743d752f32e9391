"""The thresholds and limits a session's pipeline runs with, taken from `Settings` once."""

from __future__ import annotations

from dataclasses import dataclass

from backend.core.config import Settings
from backend.pipeline.cpu_share import fair_share
from backend.pipeline.jpeg import FrameLimits
from backend.pipeline.motion import FlowMethod
from backend.pipeline.tracker import TrackerThresholds


@dataclass(frozen=True)
class PipelineConfig:
    """What `SessionPipeline` needs of the settings, and nothing else."""

    frame_limits: FrameLimits
    conf_threshold: float  # detection and pose
    iou_threshold: float
    max_detections: int
    tracker: TrackerThresholds
    cpu_share: float  # cores of decode + motion time per session
    motion_method: FlowMethod
    flow_step: int  # frame pixels between motion grid points
    ocr_min_interval_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineConfig:
        return cls(
            frame_limits=FrameLimits(settings.max_frame_bytes, settings.max_frame_pixels),
            conf_threshold=settings.conf_threshold,
            iou_threshold=settings.iou_threshold,
            max_detections=settings.max_detections,
            tracker=TrackerThresholds(
                high_thresh=settings.track_high_thresh,
                low_thresh=settings.track_low_thresh,
                new_track_thresh=settings.new_track_thresh,
                match_iou=settings.track_match_iou,
                track_buffer=settings.track_buffer,
            ),
            cpu_share=settings.session_cpu_share or fair_share(settings.max_sessions),
            motion_method=settings.motion_method,
            flow_step=settings.flow_step,
            ocr_min_interval_s=settings.ocr_min_interval_s,
        )
