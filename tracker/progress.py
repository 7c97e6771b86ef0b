"""Terminal progress for `facetrack run`: a bar with fps and ETA for files, a counter for live sources."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from facetrack.tracker.pipeline import Tracker
from facetrack.tracker.schema import FrameResult


class RunProgress:
    """Counts frames and faces; draws a bar when enabled (a terminal), stays silent otherwise."""

    def __init__(self, console: Console, tracker: Tracker, enabled: bool) -> None:
        self._tracker = tracker
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[fps]:>6.1f} fps  {task.fields[extra]}"), TimeRemainingColumn(),
            console=console, disable=not enabled, transient=True,
        )
        self._task = None
        self._started = 0.0
        self.frames = 0
        self.frames_with_face = 0

    def __enter__(self) -> RunProgress:
        self._progress.__enter__()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    @property
    def fps(self) -> float:
        elapsed = time.perf_counter() - self._started
        return self.frames / elapsed if elapsed > 0 else 0.0

    def on_result(self, result: FrameResult) -> None:
        self.frames += 1
        self.frames_with_face += bool(result.faces)
        if self._task is None:
            self._task = self._progress.add_task("tracking", total=self._expected_frames(), fps=0.0, extra="")
        if self.frames % 10 == 0:
            extra = f"dropped {result.dropped_frames}" if result.dropped_frames else ""
            self._progress.update(self._task, completed=self.frames, fps=self.fps, extra=extra)

    def _expected_frames(self) -> int | None:
        info = self._tracker.metadata.source if self._tracker.metadata else None
        if info is None or info.live:
            return None
        if info.duration and info.fps:
            return round(info.duration * info.fps)
        return info.frames

    def summary(self, outputs: tuple[Path, ...], endpoint: str | None) -> str:
        parts = [f"Tracked {self.frames} frames ({self.frames_with_face} with a face) at {self.fps:.1f} fps"]
        if outputs:
            parts.append("wrote " + ", ".join(str(p) for p in outputs))
        if endpoint:
            parts.append(f"published to {endpoint}")
        return "; ".join(parts) + "."
