"""Step 9 of a face, the eye events: where "this eye is closed" is decided, once, for everything.

Per frame and eye, `decide` gives the verdict from the best evidence there is: the eye-state
engine's P(closed), weighed by how well the eye is seen (`eye_quality`: its size in pixels, how far
the head is turned from it, whether it is inside the picture); an eye that is not seen takes the
other eye's verdict, else its lids'. Without an engine, the fitted eyeBlink weight decides, else the
lid opening. Everything else follows the verdict: ELAM closes the lids of a closed eye
(stages/eye_state.py), `blink_weight` puts eyeBlink on the verdict's side of
`EyeOptions.blink_weight_closed` in the fitted model (so its mesh) and in the published weights, and
`BlinkDetector` turns the verdicts of one track into blink and wink events. The thresholds are
fields of `EyeOptions` (tracker/stages/eye_options.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.stages import eyes as E
from facetrack.tracker.stages.eye_options import EyeOptions

BLINK = [ARKIT_BLENDSHAPES.index("eyeBlinkLeft"), ARKIT_BLENDSHAPES.index("eyeBlinkRight")]
_LIDS = np.concatenate([E.L_UPPER, E.L_LOWER, E.R_UPPER, E.R_LOWER]).reshape(2, -1)


@dataclass
class EyeVerdict:
    """One face's two eyes (left, right): the verdict and how sure it is."""

    closed: np.ndarray  # (2,) bool
    p_closed: np.ndarray  # (2,) P(closed) as reported: the engine's, pulled toward 0.5 as quality drops; NaN unseen
    quality: np.ndarray  # (2,) 0 (not seen) .. 1 (seen well enough to trust the engine fully)
    visible: np.ndarray = field(init=False)  # (2,) bool: quality > 0

    def __post_init__(self) -> None:
        self.visible = self.quality > 0


def _ramp(value: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip((value - low) / max(high - low, 1e-9), 0.0, 1.0)


def eye_quality(options: EyeOptions, landmarks: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(2,) how well each eye is seen: the least of its size in pixels, its width against the other eye's (a head
    turned away foreshortens the far eye) and whether its lids are inside the picture."""
    lm = np.asarray(landmarks)
    widths = E.eye_widths(lm)
    size = _ramp(widths, options.eye_min_px, options.eye_good_px)
    turn = _ramp(widths / max(float(widths.max()), 1e-9), options.eye_min_width_ratio, options.eye_good_width_ratio)
    w, h = image_size
    pts = lm[_LIDS, :2]
    inside = ((pts[..., 0] >= 0) & (pts[..., 0] < w) & (pts[..., 1] >= 0) & (pts[..., 1] < h)).all(1)
    return np.minimum(size, turn) * inside


def decide(options: EyeOptions, p_engine: np.ndarray, quality: np.ndarray, opening: np.ndarray,
           blendshapes: np.ndarray | None = None) -> EyeVerdict:
    """The verdict for both eyes.

    p_engine: (2,) the engine's P(closed) (NaN without an engine); quality: `eye_quality`; opening: (2,) lid
    opening relative to the track's open eye (the fallback evidence); blendshapes: the fitted weights, the
    evidence when there is no engine.
    """
    p_engine = np.asarray(p_engine, np.float64)
    quality = np.where(np.isfinite(p_engine), np.asarray(quality, np.float64), 0.0)
    p = np.where(quality > 0, 0.5 + quality * (p_engine - 0.5), np.nan)
    lids = np.asarray(opening) < options.openness_closed
    if not np.isfinite(p_engine).any():
        closed = (np.asarray(blendshapes)[BLINK] >= options.blink_weight_closed if blendshapes is not None else lids)
        return EyeVerdict(np.asarray(closed, bool), p, quality)
    seen = np.isfinite(p)
    closed = np.where(seen, p >= options.p_closed_closed, lids)
    for k in range(2):  # eyes close together: an unseen eye follows the seen one
        if not seen[k] and seen[1 - k]:
            closed[k] = closed[1 - k]
    return EyeVerdict(closed.astype(bool), p, quality)


def blink_weight(options: EyeOptions, weight: np.ndarray, verdict: EyeVerdict) -> np.ndarray:
    """(2,) eyeBlink weights (left, right) on the verdict's side: a closed eye at least its P(closed) (and at least
    `blink_weight_closed`), an open one below `blink_weight_closed` (at most `blink_weight_open_max`)."""
    weight = np.asarray(weight, np.float64)
    p = np.nan_to_num(verdict.p_closed, nan=0.0)
    closed_floor = np.maximum(p, options.blink_weight_closed)
    return np.where(verdict.closed, np.maximum(weight, closed_floor), np.minimum(weight, options.blink_weight_open_max))


@dataclass
class BlinkEvent:
    """A closure of one or both eyes: start and end frame (inclusive)."""

    kind: str  # "blink" (both eyes) or "wink_left" / "wink_right"
    start_frame: int
    end_frame: int


@dataclass
class BlinkDetector:
    """Blink and wink events from per-frame closure decisions of one track.

    An eye's closure run starts when it is closed and ends on the first open frame. A run
    ends as an event: a blink when both eyes were closed together for most of it, else a
    wink of the closed eye.
    """

    min_overlap: float = EyeOptions.model_fields["blink_overlap"].default
    _both: int = 0
    _len: int = 0
    _start: int | None = None
    _closed_count: list[int] = field(default_factory=lambda: [0, 0])

    def update(self, frame: int, closed: tuple[bool, bool]) -> list[BlinkEvent]:
        """Feed one frame's (left, right) closure; returns the events that ended on it."""
        events: list[BlinkEvent] = []
        any_closed = closed[0] or closed[1]
        if any_closed:
            if self._start is None:
                self._start, self._len, self._both, self._closed_count = frame, 0, 0, [0, 0]
            self._len += 1
            self._both += int(closed[0] and closed[1])
            self._closed_count[0] += int(closed[0])
            self._closed_count[1] += int(closed[1])
            self._last = frame
        elif self._start is not None:
            events.append(self._finish())
        return events

    def flush(self) -> list[BlinkEvent]:
        """End an open run (end of stream)."""
        return [self._finish()] if self._start is not None else []

    def _finish(self) -> BlinkEvent:
        start, end = self._start, self._last
        if self._both >= self.min_overlap * self._len:
            kind = "blink"
        else:
            kind = "wink_left" if self._closed_count[0] >= self._closed_count[1] else "wink_right"
        self._start = None
        return BlinkEvent(kind, int(start), int(end))
