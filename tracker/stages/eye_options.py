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
    closed_threshold: float = Field(0.5, ge=0, le=1, description="P(closed) at and above which ELAM corrects an eye.")
    blink_weight_closed: float = Field(
        0.5, ge=0, le=1,
        description="Events: an eye whose (filtered) eyeBlink weight is at or above this counts as closed.",
    )
    p_closed_closed: float = Field(
        0.5, ge=0, le=1,
        description="Events without blendshapes (no model): an eye with P(closed) at or above this counts as closed.",
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
