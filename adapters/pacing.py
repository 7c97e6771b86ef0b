"""`FramePacer`: send a file's frames at the rate they were filmed.

Tracking a file runs faster than real time (about 130 frames per second here); an avatar
app fed at that rate plays the performance back too fast and floods its network queue.
The pacer sleeps until each frame's presentation time, counted from the first frame, has
come. A sender that falls behind (tracking slower than the video) re-anchors instead of
bursting to catch up, and a jump in the timestamps (a seek, a loop) waits at most
`max_wait_s`.
"""

from __future__ import annotations

import time


class FramePacer:
    """Waits until `pts` seconds after the first frame's pts have passed on the wall clock."""

    def __init__(self, max_wait_s: float = 1.0, late_s: float = 0.25) -> None:
        self.max_wait_s = max_wait_s
        self.late_s = late_s
        self._anchor: tuple[float, float] | None = None  # (monotonic time, pts) of the reference frame
        self.waited_s = 0.0

    def wait(self, pts: float | None) -> None:
        """Sleep until the frame with this pts is due; frames without a pts are not paced."""
        if pts is None:
            return
        now = time.monotonic()
        if self._anchor is None:
            self._anchor = (now, pts)
            return
        due = self._anchor[0] + (pts - self._anchor[1])
        delay = due - now
        if delay > self.max_wait_s or delay < -self.late_s or pts < self._anchor[1]:
            self._anchor = (now + max(0.0, min(delay, self.max_wait_s)), pts)  # re-anchor: no burst, no long stall
            delay = max(0.0, min(delay, self.max_wait_s))
        if delay > 0:
            time.sleep(delay)
            self.waited_s += delay
