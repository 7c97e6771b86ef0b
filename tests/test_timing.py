"""Stage timings keep the last `window` samples in memory that does not grow (a live run lasts hours)."""

from __future__ import annotations

import tracemalloc

import pytest

from facetrack.tracker.core.timing import StageTimings


def test_the_summary_covers_the_last_window_only() -> None:
    timings = StageTimings(window=100)
    for i in range(250):
        timings.record("fit", i / 1000)
    summary = timings.summary()["fit"]
    assert summary.frames == 100
    assert summary.mean_ms == pytest.approx(sum(range(150, 250)) / 100)
    assert summary.median_ms == pytest.approx(199.5)
    timings.record("eyes", 0.002)
    assert timings.summary()["eyes"].frames == 1 and timings.summary()["eyes"].median_ms == pytest.approx(2.0)


def test_recording_allocates_nothing_after_a_stage_is_first_seen() -> None:
    """A deque of Python floats grew by ~32 bytes a sample until full: 5 MB over a 13-minute live run."""
    stages = ["landmarks", "fit", "eyes", "dynamics", "gaze", "filter", "events", "publish"]
    timings = StageTimings(window=5_000)
    for stage in stages:
        timings.record(stage, 0.001)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(12_000):
            for stage in stages:
                timings.record(stage, i * 1e-6)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 4096, f"{grown} bytes for 96,000 samples"
