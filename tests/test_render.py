"""Overlay videos on the real clip: the input's frame count and pts, and drawn pixels on the face."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

from facetrack.adapters.file_sinks import open_file_sink, read_results
from facetrack.adapters.render_sink import render_video
from facetrack.tracker.cli.viz import overlay_sinks, render_command
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.core.errors import SinkError
from facetrack.tracker.core.schema import FrameResult, HeadPose
from facetrack.tracker.pipeline import Tracker
from facetrack.tracker.sources.config import SourceConfig
from facetrack.tracker.sources.frame_source import open_source
from facetrack.tracker.viz.overlay import OverlayStyle, draw_overlay, head_axes, project_points

TIME_BASE = Fraction(1, 1000)
PTS = [500 + 40 * i + (30 if i >= 9 else 0) + (5 if i % 7 == 3 else 0) for i in range(18)]
"""Irregular pts from 0.5 s: a gap after frame 8 and jittered frames, as a phone or a cut would leave."""


def _encode(path: Path, images: list[np.ndarray], pts: list[int], pix_fmt: str = "yuv420p") -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = pix_fmt
        stream.time_base = stream.codec_context.time_base = TIME_BASE
        for image, t in zip(images, pts, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = t, TIME_BASE
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _decode(path: Path) -> tuple[list[float], list[np.ndarray]]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return [f.time for f in frames], [f.to_ndarray(format="rgb24") for f in frames]


@pytest.fixture(scope="module")
def vfr_clip(face_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """18 frames of the real face clip at irregular pts in a 1/1000 time base."""
    images = []
    with av.open(str(face_clip)) as container:
        for frame in container.decode(video=0):
            images.append(frame.to_ndarray(format="rgb24"))
            if len(images) == len(PTS):
                break
    return _encode(tmp_path_factory.mktemp("render") / "vfr.mp4", images, PTS)


@pytest.fixture(scope="module")
def tracked_run(vfr_clip: Path) -> tuple[Path, Path]:
    """One tracking pass with `--render` (the overlay sink) and a results file: (overlay, results)."""
    overlay, results = vfr_clip.with_name("run_overlay.mp4"), vfr_clip.with_name("results.jsonl")
    frames, sinks = overlay_sinks(open_source(vfr_clip), render=overlay)
    Tracker(TrackerConfig()).run(frames, [open_file_sink(results), *sinks])
    return overlay, results


@pytest.mark.media
def test_run_render_keeps_the_inputs_frames_and_timing(vfr_clip: Path, tracked_run: tuple[Path, Path]) -> None:
    overlay, results = tracked_run
    times, _ = _decode(vfr_clip)
    assert times == pytest.approx([t / 1000 for t in PTS], abs=1e-9)
    rendered, _ = _decode(overlay)
    assert rendered == pytest.approx(times, abs=1e-9)
    assert all(len(r.faces) == 1 for r in read_results(results))


@pytest.mark.media
def test_render_command_draws_on_the_face_at_the_inputs_timing(vfr_clip: Path, tracked_run: tuple[Path, Path],
                                                               tmp_path: Path) -> None:
    _, results = tracked_run
    out = tmp_path / "mesh.mp4"
    done = CliRunner().invoke(render_command, [str(vfr_clip), str(results), "--out", str(out), "--no-axes",
                                               "--no-panel"])
    assert done.exit_code == 0, done.output
    assert f"Rendered {len(PTS)} frames" in done.output
    source_times, source_images = _decode(vfr_clip)
    times, images = _decode(out)
    assert times == pytest.approx(source_times, abs=1e-9)
    for result, before, after in zip(read_results(results), source_images, images, strict=True):
        changed = np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 40
        x0, y0, x1, y1 = (int(v) for v in result.faces[0].bbox)
        near_face = np.zeros_like(changed)
        near_face[max(0, y0 - 6) : y1 + 7, max(0, x0 - 6) : x1 + 7] = True
        assert changed.sum() > 0.03 * (x1 - x0) * (y1 - y0), result.frame_index  # the mesh is there...
        assert changed[near_face].sum() >= 0.99 * changed.sum(), result.frame_index  # ...and on the face


@pytest.mark.media
def test_each_layer_lands_where_it_belongs(vfr_clip: Path, tracked_run: tuple[Path, Path]) -> None:
    _, results = tracked_run
    result = read_results(results)[5]
    face = result.faces[0]
    _, images = _decode(vfr_clip)
    image = images[5]
    x0, y0, x1, y1 = (int(v) for v in face.bbox)
    for mode in ("mesh", "points"):
        style = OverlayStyle(landmarks=mode, axes=False, panel=False, labels=False)
        changed = np.any(draw_overlay(image, result, style) != image, axis=2)
        ys, xs = np.nonzero(changed)
        assert xs.min() >= x0 - 5 and xs.max() <= x1 + 5 and ys.min() >= y0 - 5 and ys.max() <= y1 + 5, mode
        assert changed.sum() > 0.05 * (x1 - x0) * (y1 - y0), mode
    centre = head_axes(face.pose, (result.width, result.height))[0]
    assert x0 < centre[0] < x1 and y0 < centre[1] < y1  # the pose's head centre projects into the face
    full = draw_overlay(image, result)
    panel = np.any(full[:, : image.shape[1] // 2] != image[:, : image.shape[1] // 2], axis=2)
    assert panel[:40, :100].mean() > 0.5  # the panel is drawn top left


def test_axes_follow_the_trackers_pinhole_camera() -> None:
    frontal = HeadPose(rotation=(0.0, 0.0, 0.0, 1.0), yaw=0, pitch=0, roll=0, translation=(5.0, 0.0, -50.0))
    centre, x_tip, y_tip, z_tip = head_axes(frontal, (640, 480), length_cm=8.0)
    assert centre == pytest.approx((320 + 640 * 5 / 50, 240))
    assert x_tip == pytest.approx((320 + 640 * 13 / 50, 240))  # subject's left: image right (not mirrored)
    assert y_tip == pytest.approx((320 + 640 * 5 / 50, 240 - 640 * 8 / 50))  # up
    assert z_tip == pytest.approx((320 + 640 * 5 / 42, 240))  # toward the camera: away from the centre
    assert project_points(np.array([[0.0, 0.0, -40.0]]), (640, 480), focal_px=900.0)[0] == pytest.approx((320, 240))


def test_odd_sizes_and_frames_without_results_keep_count_and_timing(tmp_path: Path) -> None:
    images = [np.full((121, 161, 3), 10 * i, np.uint8) for i in range(6)]
    source = _encode(tmp_path / "odd.mp4", images, PTS[:6], pix_fmt="yuv444p")
    assert render_video(source, [], tmp_path / "odd_overlay.mov") == 6
    times, frames = _decode(tmp_path / "odd_overlay.mov")
    assert times == pytest.approx([t / 1000 for t in PTS[:6]], abs=1e-9)
    assert frames[0].shape == (122, 162, 3)  # yuv420p: one replicated row and column
    assert not (tmp_path / "odd_overlay.mov.partial").exists()


def test_a_live_source_keeps_its_timing_from_its_first_frame(tmp_path: Path) -> None:
    images = [np.full((120, 160, 3), 20 * i, np.uint8) for i in range(8)]
    source = _encode(tmp_path / "live.mp4", images, PTS[:8])
    live = open_source(source, SourceConfig(realtime=True))
    frames, sinks = overlay_sinks(live, render=tmp_path / "live_overlay.mp4")
    seen: list[float] = []
    Tracker(TrackerConfig(model=None)).run(frames, sinks, on_result=lambda result: seen.append(result.pts))
    times, _ = _decode(tmp_path / "live_overlay.mp4")
    assert len(times) == len(seen) > 0  # a live source may drop frames; each one tracked is in the video
    assert times == pytest.approx([t - seen[0] for t in seen], abs=1e-4)  # 90 kHz ticks


def test_results_of_another_video_are_refused(tmp_path: Path) -> None:
    source = _encode(tmp_path / "small.mp4", [np.zeros((64, 64, 3), np.uint8)] * 2, PTS[:2])
    other = FrameResult(stream_id="main", frame_index=0, pts=0.5, capture_time=0.0, width=512, height=512)
    with pytest.raises(SinkError, match="512x512"):
        render_video(source, [other], tmp_path / "x.mp4")
    with pytest.raises(SinkError, match=r"\.mp4"):
        render_video(source, [], tmp_path / "x.avi")
