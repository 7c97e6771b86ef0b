"""Per-stage wall-clock timings with bounded memory (a 10-minute run must not grow)."""

from __future__ import annotations

import time
from collections import deque

import numpy as np
from pydantic import BaseModel


class StageSummary(BaseModel):
    frames: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float


class StageTimings:
    """The last `window` durations of each named stage, in seconds."""

    def __init__(self, window: int = 20_000) -> None:
        self._window = window
        self._samples: dict[str, deque[float]] = {}

    def record(self, stage: str, seconds: float) -> None:
        samples = self._samples.get(stage)
        if samples is None:
            samples = self._samples[stage] = deque(maxlen=self._window)
        samples.append(seconds)

    def summary(self) -> dict[str, StageSummary]:
        result = {}
        for stage, samples in self._samples.items():
            ms = np.asarray(samples) * 1e3
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
