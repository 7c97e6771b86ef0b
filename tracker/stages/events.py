"""Step 9 of a face, the eye events: where a blink is decided.

Per frame, `closed_eyes` gives the verdict open/closed for each eye, from the best evidence there
is: the filtered eyeBlink weights (a model was fitted), else P(closed) of the eye-state engine,
else the lid opening relative to the track's calibrated open eye. `BlinkDetector` turns the
verdicts of one track into blink and wink events. The thresholds are fields of `EyeOptions`
(tracker/stages/eye_options.py); `EyeStage.finish` (tracker/stages/eye_state.py) calls both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.stages.eye_options import EyeOptions

BLINK = [ARKIT_BLENDSHAPES.index("eyeBlinkLeft"), ARKIT_BLENDSHAPES.index("eyeBlinkRight")]


def closed_eyes(options: EyeOptions, blendshapes: np.ndarray | None, p_closed: np.ndarray,
                openness: np.ndarray) -> tuple[bool, bool]:
    """(left, right): is each eye closed on this frame."""
    if blendshapes is not None:
        return (bool(blendshapes[BLINK[0]] >= options.blink_weight_closed),
                bool(blendshapes[BLINK[1]] >= options.blink_weight_closed))
    if np.isfinite(p_closed).all():
        return bool(p_closed[0] >= options.p_closed_closed), bool(p_closed[1] >= options.p_closed_closed)
    return bool(openness[0] < options.openness_closed), bool(openness[1] < options.openness_closed)


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
