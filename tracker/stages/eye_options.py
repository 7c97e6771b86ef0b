"""Every switch and threshold of the eye stages, in one described model (TrackerConfig.eyes).

The verdict "this eye is closed" is made in one place, tracker/stages/events.py, from the
thresholds here; ELAM (tracker/stages/eye_state.py) and the filter's blink snap
(tracker/stages/filter.py) read theirs from here too. Plain pydantic: validating a config loads no
decoder, no OpenCV and no engine.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class EyeOptions(BaseModel):
    """The eye/mouth stages' switches (all on by default) and their eye-closure thresholds."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Run the eye stages at all.")
    engine: Path | None = Field(None, description="Eye-state engine (.onnx); default: the one in the package.")
    elam: bool = Field(True, description="Correct the upper lids from P(closed) (ELAM).")
    dynamics: bool = Field(True, description="Refine lid/lip weights to the landmarks (online LDL).")
    gaze: bool = Field(True, description="eyeLook* weights from the irises.")
    closed_threshold: float = Field(
        0.5, ge=0, le=1,
        description="ELAM corrects an eye the verdict calls closed when its P(closed) is at or above this too.",
    )
    p_closed_closed: float = Field(
        0.5, ge=0, le=1,
        description="The verdict: an eye whose reported P(closed) is at or above this is closed, below it open.",
    )
    blink_weight_closed: float = Field(
        0.5, ge=0, le=1,
        description="The eyeBlink weight that says closed: a closed eye's weight is raised to at least this (and its "
                    "P(closed)); without an eye-state engine, an eye whose fitted weight reaches it is closed.",
    )
    blink_weight_open_max: float = Field(
        0.45, ge=0, lt=1,
        description="The most eyeBlink an open eye keeps (a squint's fitted weight is capped here, below "
                    "blink_weight_closed, so the weight never says closed when the verdict says open).",
    )
    eye_min_px: float = Field(
        3.0, ge=0,
        description="Eye quality: an eye narrower than this (corner to corner, pixels) is not seen (visible false, "
                    "no P(closed)); its verdict is the other eye's, else its lids'.",
    )
    eye_good_px: float = Field(
        10.0, gt=0,
        description="Eye quality: an eye at least this wide (pixels) is seen well; between eye_min_px and this, "
                    "the reported P(closed) is pulled toward 0.5.",
    )
    eye_min_width_ratio: float = Field(
        0.2, ge=0, le=1,
        description="Eye quality: an eye narrower than this fraction of the other eye (the head turned away from "
                    "it) is not seen.",
    )
    eye_good_width_ratio: float = Field(
        0.45, gt=0, le=1,
        description="Eye quality: an eye at least this fraction of the other eye's width is seen fully.",
    )
    openness_closed: float = Field(
        0.5, ge=0, le=1,
        description="Events with neither blendshapes nor an eye-state engine: an eye whose openness (opening over "
                    "the track's calibrated open opening) is below this counts as closed.",
    )
    blink_overlap: float = Field(
        0.5, ge=0, le=1,
        description="Events: a closure is a blink when both eyes were closed together for at least this fraction "
                    "of it, else a wink of the eye closed longer.",
    )
    calibrate_p_open: float = Field(
        0.2, ge=0, le=1,
        description="Calibration of a track's open eye: frames with P(closed) below this count as open.",
    )
    calibrate_opening_open: float = Field(
        0.2, ge=0,
        description="Calibration without an eye-state engine: frames whose relative opening (lid gap over eye "
                    "width) is above this count as open.",
    )
    gaze_hold_p_closed: float = Field(
        0.5, ge=0, le=1,
        description="Gaze: an eye with P(closed) at or above this keeps its last gaze (its iris is not seen).",
    )
    blink_snap: float = Field(
        0.25, gt=0,
        description="Filter: an eyeBlink weight jump this large passes the One Euro filter at once, so a blink "
                    "is not smoothed away.",
    )
