"""Per-stage wall-clock timings with bounded memory (a 10-minute run must not grow)."""

from __future__ import annotations

import time

import numpy as np
from pydantic import BaseModel


class StageSummary(BaseModel):
    frames: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float


class StageTimings:
    """The last `window` durations of each named stage, in seconds.

    Each stage keeps a ring of float64 written in place, allocated and touched in full at its first
    sample: a live run's memory stays flat (a deque of Python floats grew about 0.4 MB a minute until
    it held `window` samples, most of a 30-minute soak's growth).
    """

    def __init__(self, window: int = 20_000) -> None:
        self._window = window
        self._samples: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}

    def record(self, stage: str, seconds: float) -> None:
        ring = self._samples.get(stage)
        if ring is None:
            ring = self._samples[stage] = np.full(self._window, np.nan)
            self._counts[stage] = 0
        count = self._counts[stage]
        ring[count % self._window] = seconds
        self._counts[stage] = count + 1

    def summary(self) -> dict[str, StageSummary]:
        result = {}
        for stage, ring in self._samples.items():
            ms = ring[: min(self._counts[stage], self._window)] * 1e3
            result[stage] = StageSummary(
                frames=len(ms),
                median_ms=float(np.median(ms)),
                p90_ms=float(np.percentile(ms, 90)),
                p99_ms=float(np.percentile(ms, 99)),
                mean_ms=float(ms.mean()),
            )
        return result

    def clear(self) -> None:
        self._samples.clear()
        self._counts.clear()


class StageClock:
    """Sums the time of named stages over one frame, where the stages interleave face by face."""

    def __init__(self, stages: list[str]) -> None:
        self.seconds = dict.fromkeys(stages, 0.0)
        self._last = time.perf_counter()

    def start(self) -> None:
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        """Charge the time since the last lap (or start) to `stage`."""
        now = time.perf_counter()
        self.seconds[stage] += now - self._last
        self._last = now
