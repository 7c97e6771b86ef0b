"""The regress engine's rest face: each track's own reading of a calm face, taken off its weights.

The fit solves a track's expressions against that person's neutral face (identity modes estimated
over many frames plus a rest face from the calmest frames of a warm-up: facemodel/rest_face.py).
The regress engine sees one frame at a time, so a person whose brows sit high or whose lips rest
pressed reads as raising the brows or pressing the lips on every frame: on the validation clips
of its training, such per-person offsets reached 0.3 (browOuterUp, mouthShrugUpper). This gives
it the same kind of warm-up: per track, the weights of the first `window` frames are kept; the
median of the calmest `keep` fraction of them (lowest summed weight), capped at `cap`, is taken
off every later frame's weights (provisionally after `early` frames, finally after `window`).

Left as they are: the eyes (the eye stage's verdict owns them) and jawOpen (a mouth that rests
a little open is read small, and taking it off clips small openings to zero: on validation that
cost more in jawOpen correlation than it gained in error).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES

EYES = np.array([n.startswith("eye") for n in ARKIT_BLENDSHAPES])
KEPT = EYES | (np.array(ARKIT_BLENDSHAPES) == "jawOpen")
"""Weights the rest face never changes (calm is judged on all but the eyes)."""


class RegressRestConfig(BaseModel):
    """How each track's rest face is found (the fit's warm-up defaults; `cap` chosen on held-back training clips)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int = Field(120, ge=1, description="Frames of the warm-up the rest face is taken from.")
    early: int = Field(30, ge=0, description="A provisional rest face after this many frames (0: none).")
    keep: float = Field(0.15, gt=0, le=1, description="Fraction of the warm-up's calmest frames used.")
    cap: float = Field(0.2, ge=0, le=1, description="Most of any one weight the rest face takes off.")


@dataclass
class _Warmup:
    window: int
    early: int
    source: str  # how the rest face being collected is found
    weights: list[np.ndarray] = field(default_factory=list)
    rest: np.ndarray | None = None
    rest_source: str | None = None  # how the current one was


class RegressRest:
    """Per-track rest faces of the regress engine's weights, for one stream."""

    def __init__(self, config: RegressRestConfig | None = None, source: str = "auto") -> None:
        self.config = config or RegressRestConfig()
        self.source = source  # how new tracks' rest faces are found: "auto" (a warm-up) or "on demand"
        self._tracks: dict[int, _Warmup] = {}

    def apply(self, track_id: int, weights: np.ndarray) -> np.ndarray:
        """This frame's 52 weights less the track's rest face (as they are until it has one)."""
        c = self.config
        track = self._tracks.setdefault(track_id, _Warmup(c.window, c.early, self.source))
        if len(track.weights) < track.window:
            track.weights.append(np.asarray(weights, np.float32).copy())
            if len(track.weights) in (track.early, track.window):
                track.rest, track.rest_source = self._rest(np.stack(track.weights)), track.source
        if track.rest is None:
            return weights
        return np.clip(weights - track.rest, 0.0, 1.0)

    def _rest(self, warmup: np.ndarray) -> np.ndarray:
        energy = warmup[:, ~EYES].sum(axis=1)
        calm = warmup[np.argsort(energy, kind="stable")[: max(1, int(self.config.keep * len(warmup)))]]
        return np.where(KEPT, 0.0, np.minimum(np.median(calm, axis=0), self.config.cap)).astype(np.float32)

    def recalibrate(self, track_ids: list[int], frames: int) -> None:
        """Take these tracks' rest faces from their next `frames` frames (the person holds a neutral face); the
        current one holds until then."""
        for track_id in track_ids:
            old = self._tracks.get(track_id) or _Warmup(0, 0, "")
            self._tracks[track_id] = _Warmup(max(1, frames), 0, "on demand", rest=old.rest, rest_source=old.rest_source)

    def rest_face(self, track_id: int) -> np.ndarray | None:
        """The track's current rest weights (52), None before it has one."""
        track = self._tracks.get(track_id)
        return None if track is None or track.rest is None else track.rest.copy()

    def calibration(self, track_id: int) -> str | None:
        """How the track's current rest face was found ("auto", "on demand"), None before it has one."""
        track = self._tracks.get(track_id)
        return None if track is None else track.rest_source

    def track_ids(self) -> list[int]:
        return list(self._tracks)

    def forget(self, track_ids: list[int]) -> None:
        for track_id in track_ids:
            self._tracks.pop(track_id, None)
