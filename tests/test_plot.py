"""`facetrack plot`: a PNG of the requested size with the curves and the blinks marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from facetrack.adapters.file_sinks import open_file_sink
from facetrack.tracker.cli.viz import plot_command
from facetrack.tracker.core.schema import (
    ARKIT_BLENDSHAPES,
    EyeEvent,
    Eyes,
    EyeState,
    FaceResult,
    FrameResult,
    HeadPose,
    SourceInfo,
    StreamMetadata,
)
from facetrack.tracker.viz.plot import collect_curves, plot_results

BLINK = (40, 44)
BLINK_SHADE = np.array([248, 216, 216])
"""tab:red at the shading's alpha 0.18 over the white axes background."""


def _take(frames: int = 120, blink: bool = True) -> list[FrameResult]:
    """A 25 fps take of one face: smooth pose and jaw, a blink at BLINK reported after it ends."""
    results = []
    for i in range(frames):
        closed = blink and BLINK[0] <= i <= BLINK[1]
        weights = np.zeros(len(ARKIT_BLENDSHAPES), np.float32)
        weights[ARKIT_BLENDSHAPES.index("jawOpen")] = 0.5 + 0.5 * np.sin(i / 6)
        weights[ARKIT_BLENDSHAPES.index("mouthSmileLeft")] = i / frames
        weights[ARKIT_BLENDSHAPES.index("eyeBlinkLeft")] = weights[ARKIT_BLENDSHAPES.index("eyeBlinkRight")] = closed
        eye = EyeState(p_closed=0.95 if closed else 0.02, openness=0.05 if closed else 1.0)
        face = FaceResult(
            track_id=3, bbox=(10, 10, 50, 50), score=0.9, landmarks=np.zeros((478, 3)),
            pose=HeadPose(rotation=(0, 0, 0, 1), yaw=20 * np.sin(i / 20), pitch=5.0, roll=-3.0,
                          translation=(0, 0, -50)),
            blendshapes=weights, eyes=Eyes(left=eye, right=eye), mouth_openness=float(weights[17]),
        )  # fmt: skip
        events = [EyeEvent(track_id=3, kind="blink", start_frame=BLINK[0], end_frame=BLINK[1])]
        results.append(FrameResult(stream_id="main", frame_index=i, pts=i / 25, capture_time=0.0, width=64, height=64,
                                   faces=[face], eye_events=events if blink and i == BLINK[1] + 1 else None))
    return results


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _shaded(pixels: np.ndarray) -> int:
    return int((np.abs(pixels.astype(int) - BLINK_SHADE).max(axis=2) <= 3).sum())


def test_plot_has_the_size_curves_and_blink_marks(tmp_path: Path) -> None:
    path = plot_results(_take(), tmp_path / "curves.png", title="take", size_px=(1000, 700))
    pixels = _pixels(path)
    assert pixels.shape == (700, 1000, 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # curves, text, legends: not a blank canvas
    assert _shaded(pixels) > 2000  # the blink is shaded in the three panels
    unmarked = _pixels(plot_results(_take(blink=False), tmp_path / "plain.png", size_px=(1000, 700)))
    assert _shaded(unmarked) < 50


def test_curves_follow_the_chosen_track_with_gaps() -> None:
    results = _take(60)
    results[10].faces = []
    curves = collect_curves(results)
    assert curves.track_id == 3
    assert np.isnan(curves.pose[10]).all() and not np.isnan(curves.pose[11]).any()
    assert curves.time[25] == pytest.approx(1.0)
    assert curves.events == [("blink", pytest.approx(BLINK[0] / 25), pytest.approx(BLINK[1] / 25))]
    with pytest.raises(ValueError, match="track 7"):
        collect_curves(results, track_id=7)


def test_plot_command_reads_a_results_file(tmp_path: Path) -> None:
    results = tmp_path / "take.jsonl"
    sink = open_file_sink(results)
    sink.start(StreamMetadata(stream_id="main", source=SourceInfo(uri="x", live=False, width=64, height=64),
                              started_at=0.0))
    for result in _take():
        sink.write(result)
    sink.close()
    out = tmp_path / "plots" / "take.png"
    done = CliRunner().invoke(plot_command, [str(results), "--out", str(out), "--size", "800x500"])
    assert done.exit_code == 0, done.output
    assert _pixels(out).shape == (500, 800, 3)
    assert _shaded(_pixels(out)) > 1000

    empty = tmp_path / "empty.jsonl"
    sink = open_file_sink(empty)
    sink.start(StreamMetadata(stream_id="main", source=SourceInfo(uri="x", live=False, width=64, height=64),
                              started_at=0.0))
    sink.write(FrameResult(stream_id="main", frame_index=0, pts=0.0, capture_time=0.0, width=64, height=64))
    sink.close()
    done = CliRunner().invoke(plot_command, [str(empty), "--out", str(tmp_path / "none.png")])
    assert done.exit_code == 2 and "no frame has a face" in done.output
    assert CliRunner().invoke(plot_command, [str(results), "--out", str(out), "--size", "big"]).exit_code == 2
