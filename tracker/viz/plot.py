"""Curves of a tracked take (`facetrack plot`): pose, eyes and the most active blendshapes over time.

One track is plotted (the one seen in most frames unless chosen); frames where it is
not seen are gaps. Blinks and winks the tracker reported (`FrameResult.eye_events`,
JSON-lines results only) are shaded across every panel, so a missed or spurious blink
shows up against the lid curves. Drawn with matplotlib's Agg canvas (no display, no
pyplot state), at an exact pixel size.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES, FrameResult

EVENT_COLOURS: dict[str, str] = {"blink": "tab:red", "wink_left": "tab:orange", "wink_right": "tab:purple"}
ACTIVE_BLENDSHAPES = 8
"""Blendshape curves drawn: the ones that move most (standard deviation) in the take, lids excepted."""
_LIDS = ("eyeBlinkLeft", "eyeBlinkRight")


@dataclass
class Curves:
    """One track's per-frame values; NaN where the track is not seen or a value is absent."""

    track_id: int
    time: np.ndarray
    time_label: str
    pose: np.ndarray  # (T, 3) yaw, pitch, roll in degrees
    blendshapes: np.ndarray  # (T, 52)
    p_closed: np.ndarray  # (T, 2) left, right
    openness: np.ndarray  # (T, 2) left, right
    mouth: np.ndarray  # (T,)
    events: list[tuple[str, float, float]] = field(default_factory=list)  # kind, start, end (time units)


def main_track(results: Sequence[FrameResult]) -> int | None:
    """The track seen in most frames (None when no frame has a face)."""
    counts = Counter(face.track_id for result in results for face in result.faces)
    return counts.most_common(1)[0][0] if counts else None


def _timeline(results: Sequence[FrameResult]) -> tuple[np.ndarray, str]:
    """Seconds from the first frame when every frame has a pts; else frame indices."""
    if results and all(r.pts is not None for r in results):
        pts = np.array([r.pts for r in results], dtype=np.float64)
        return pts - pts[0], "time (s)"
    return np.array([r.frame_index for r in results], dtype=np.float64), "frame"


def collect_curves(results: Sequence[FrameResult], track_id: int | None = None) -> Curves:
    """Arrange one track's values as arrays over the frames of `results`."""
    chosen = main_track(results) if track_id is None else track_id
    if chosen is None:
        raise ValueError("no frame has a face: nothing to plot")
    n = len(results)
    time, label = _timeline(results)
    curves = Curves(chosen, time, label, np.full((n, 3), np.nan), np.full((n, len(ARKIT_BLENDSHAPES)), np.nan),
                    np.full((n, 2), np.nan), np.full((n, 2), np.nan), np.full(n, np.nan))
    seen = False
    index_time = {r.frame_index: t for r, t in zip(results, time, strict=True)}
    for i, result in enumerate(results):
        for event in result.eye_events or ():
            if event.track_id == chosen and event.start_frame in index_time and event.end_frame in index_time:
                curves.events.append((event.kind, index_time[event.start_frame], index_time[event.end_frame]))
        face = next((f for f in result.faces if f.track_id == chosen), None)
        if face is None:
            continue
        seen = True
        curves.pose[i] = (face.pose.yaw, face.pose.pitch, face.pose.roll)
        if face.blendshapes is not None:
            curves.blendshapes[i] = np.asarray(face.blendshapes, dtype=np.float64)
        if face.eyes is not None:
            for j, eye in enumerate((face.eyes.left, face.eyes.right)):
                curves.p_closed[i, j] = np.nan if eye.p_closed is None else eye.p_closed
                curves.openness[i, j] = np.nan if eye.openness is None else eye.openness
        if face.mouth_openness is not None:
            curves.mouth[i] = face.mouth_openness
    if not seen:
        raise ValueError(f"track {chosen} is in none of the frames; tracks: {sorted(_track_ids(results))}")
    return curves


def _track_ids(results: Sequence[FrameResult]) -> set[int]:
    return {face.track_id for result in results for face in result.faces}


def active_blendshapes(curves: Curves, count: int = ACTIVE_BLENDSHAPES) -> list[str]:
    """The `count` blendshapes (lids excepted: they have their own panel) that vary most."""
    values = curves.blendshapes
    if np.isnan(values).all():
        return []
    spread = np.nan_to_num(np.nanstd(values, axis=0), nan=0.0)
    order = [i for i in np.argsort(-spread, kind="stable") if ARKIT_BLENDSHAPES[i] not in _LIDS]
    return [ARKIT_BLENDSHAPES[i] for i in order[:count] if spread[i] > 0]


def plot_curves(curves: Curves, out: str | os.PathLike[str], title: str = "", size_px: tuple[int, int] = (1200, 800),
                dpi: int = 100) -> Path:
    """Draw pose, eyes and the active blendshapes to a PNG of exactly `size_px` pixels."""
    figure = Figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    pose_axes, eye_axes, shape_axes = figure.subplots(3, 1, sharex=True, height_ratios=(1, 1, 1.3))
    for k, name in enumerate(("yaw", "pitch", "roll")):
        pose_axes.plot(curves.time, curves.pose[:, k], label=name, linewidth=1.2)
    pose_axes.set_ylabel("head (deg)")
    _eye_panel(eye_axes, curves)
    names = active_blendshapes(curves)
    for name in names:
        shape_axes.plot(curves.time, curves.blendshapes[:, ARKIT_BLENDSHAPES.index(name)], label=name, linewidth=1.1)
    if not names:
        shape_axes.text(0.5, 0.5, "no blendshapes in these results (tracked with --model none?)",
                        ha="center", va="center", transform=shape_axes.transAxes, color="grey")
    shape_axes.set_ylim(-0.02, 1.02)
    shape_axes.set_ylabel("blendshape weight")
    shape_axes.set_xlabel(curves.time_label)
    for axes in (pose_axes, eye_axes, shape_axes):
        _shade_events(axes, curves)
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    counts = Counter(kind for kind, _, _ in curves.events)
    if counts:
        handles = [Patch(color=EVENT_COLOURS[k], alpha=0.25, label=f"{k.replace('_', ' ')} ({n})")
                   for k, n in sorted(counts.items())]
        figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    figure.suptitle(f"{title}  track #{curves.track_id}".strip())
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path


def _eye_panel(axes: Axes, curves: Curves) -> None:
    """Lids: eyeBlink weights, P(closed) from the eye-state engine and openness, per eye."""
    blink = curves.blendshapes[:, [ARKIT_BLENDSHAPES.index(n) for n in _LIDS]]
    for j, (side, colour) in enumerate((("L", "tab:blue"), ("R", "tab:green"))):
        if not np.isnan(blink[:, j]).all():
            axes.plot(curves.time, blink[:, j], color=colour, linewidth=1.2, label=f"eyeBlink {side}")
        if not np.isnan(curves.p_closed[:, j]).all():
            axes.plot(curves.time, curves.p_closed[:, j], color=colour, linestyle=":", linewidth=1.0,
                      label=f"P closed {side}")
        if not np.isnan(curves.openness[:, j]).all():
            axes.plot(curves.time, curves.openness[:, j], color=colour, linestyle="--", linewidth=0.9, alpha=0.7,
                      label=f"openness {side}")
    if not np.isnan(curves.mouth).all():
        axes.plot(curves.time, curves.mouth, color="tab:brown", linewidth=0.9, alpha=0.7, label="mouth open")
    axes.set_ylim(-0.02, 1.05)
    axes.set_ylabel("eyes, mouth")


def _shade_events(axes: Axes, curves: Curves) -> None:
    step = float(np.nanmedian(np.diff(curves.time))) if len(curves.time) > 1 else 1.0
    for kind, start, end in curves.events:
        axes.axvspan(start - step / 2, end + step / 2, color=EVENT_COLOURS[kind], alpha=0.18, linewidth=0)


def plot_results(results: Sequence[FrameResult], out: str | os.PathLike[str], track_id: int | None = None,
                 title: str = "", size_px: tuple[int, int] = (1200, 800)) -> Path:
    """`collect_curves` then `plot_curves`: the whole of `facetrack plot`."""
    return plot_curves(collect_curves(results, track_id), out, title, size_px)
