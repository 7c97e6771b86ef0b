"""Terminal progress for `facetrack run`: a bar with fps and ETA for files, a counter for live sources,
and the one-screen summary printed when the run ends."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from facetrack.tracker.core.schema import FrameResult
from facetrack.tracker.pipeline import Tracker


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
        self.tracks: set[int] = set()
        self.events: Counter[str] = Counter()

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
        self.tracks.update(face.track_id for face in result.faces)
        self.events.update(event.kind for event in result.eye_events or ())
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

    def summary(self, outputs: tuple[Path, ...], endpoint: str | None, render: Path | None = None) -> Table:
        """What the run did, on one screen: frames, faces, speed, blinks, and where the results are."""
        table = Table(show_header=False, box=None, padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("frames", f"{self.frames} ({self.frames_with_face} with a face)")
        table.add_row("faces", _count(len(self.tracks), "track"))
        table.add_row("speed", f"{self.fps:.1f} fps")
        table.add_row("eyes", f"{_count(self.events['blink'], 'blink')}, "
                              f"{_count(self.events['wink_left'], 'left wink')}, "
                              f"{_count(self.events['wink_right'], 'right wink')}")
        for path in outputs:
            table.add_row("results", _describe(path))
        if render is not None:
            table.add_row("overlay", _describe(render))
        if endpoint:
            table.add_row("published", endpoint)
        return table


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _describe(path: Path) -> str:
    """A path with its size, or a note that it was not written."""
    if not path.exists():
        return f"{path} (not written)"
    size = path.stat().st_size
    return f"{path} ({size / 1e6:.1f} MB)" if size >= 1e5 else f"{path} ({size / 1e3:.1f} kB)"
