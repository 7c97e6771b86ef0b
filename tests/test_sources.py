"""Frame sources against real PyAV: real clips, clips we damage, images, a live TCP stream."""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pydantic
import pytest
from conftest import MEDIA, encode_clip

from facetrack.tracker.core.errors import SourceDecodeError, SourceLostError, SourceOpenError
from facetrack.tracker.sources.config import Frame, SourceConfig
from facetrack.tracker.sources.frame_source import FrameSource, open_source, probe_source

VIDEO_DIR = MEDIA / "videos"
REAL_CLIPS = sorted(p for p in VIDEO_DIR.rglob("*") if p.is_file()) if VIDEO_DIR.is_dir() else []


def _noise_frames(count: int, width: int = 160, height: int = 120) -> list[np.ndarray]:
    """Hard-to-compress frames, so that half the bytes is about half the frames."""
    rng = np.random.default_rng(7)
    return [(rng.integers(0, 64, (height, width, 3), dtype=np.uint8) + 3 * i).astype(np.uint8) for i in range(count)]


def _flat_frames(count: int, width: int = 160, height: int = 120, base: int = 0) -> list[np.ndarray]:
    return [np.full((height, width, 3), (base + 4 * i) % 256, np.uint8) for i in range(count)]


def _encode_mp4_faststart(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    """mp4 with its index (moov) first, so a truncated copy still opens."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def _encode(path: Path, frames: list[np.ndarray]) -> Path:
    return _encode_mp4_faststart(path, frames) if path.suffix == ".mp4" else encode_clip(path, frames)


def _write_image(path: Path, image: np.ndarray) -> Path:
    codec, pix_fmt = {".png": ("png", "rgb24"), ".bmp": ("bmp", "bgr24")}[path.suffix]
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream(codec)
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], pix_fmt
        out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return path


def _drain(source: FrameSource) -> tuple[list[Frame], BaseException | None]:
    """All frames of a source, and the error that ended it (None at a clean end)."""
    frames: list[Frame] = []
    try:
        for frame in source:
            frames.append(frame)
    except (SourceDecodeError, SourceLostError) as exc:
        return frames, exc
    return frames, None


def _decode_threads(spec: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"facetrack-source {spec}"]


# --------------------------------------------------------------------------- real clips


@pytest.mark.media
@pytest.mark.parametrize(
    "clip",
    REAL_CLIPS or [pytest.param(None, marks=pytest.mark.skip(reason=f"real media not found at {VIDEO_DIR}"))],
    ids=lambda p: p and str(p.relative_to(VIDEO_DIR)),
)
def test_real_clip_yields_every_frame_like_plain_pyav(clip: Path, media_dir: Path) -> None:
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        expected = sum(1 for _ in container.decode(stream))

    indices, pts = [], []
    with open_source(clip) as source:
        assert not source.live
        for frame in source:  # images are not kept: the long clips would need GBs
            indices.append(frame.index)
            pts.append(frame.pts)
            assert frame.image.shape == (source.info.height, source.info.width, 3)
            assert frame.image.dtype == np.uint8 and frame.image.flags.c_contiguous
            assert frame.dropped == 0
    assert indices == list(range(expected))
    assert all(b > a for a, b in zip(pts, pts[1:]))


@pytest.mark.media
def test_probe_reads_container_metadata(face_clip: Path) -> None:
    info = probe_source(face_clip)
    assert (info.width, info.height, info.fps, info.frames, info.live) == (512, 512, 25.0, 200, False)
    assert info.duration == pytest.approx(8.0)
    assert info.container and "mp4" in info.container
    assert info.uri == str(face_clip)


# --------------------------------------------------------------------------- damaged files


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_truncated_clip_yields_decodable_frames_then_decode_error(tmp_path: Path, suffix: str) -> None:
    clip = _encode(tmp_path / f"full{suffix}", _noise_frames(50))
    cut = tmp_path / f"cut{suffix}"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])

    with open_source(cut) as source:
        frames, error = _drain(source)
    assert 10 < len(frames) < 50
    assert [f.index for f in frames] == list(range(len(frames)))
    assert isinstance(error, SourceDecodeError)
    assert "truncated" in str(error) and "of 2.0 s declared" in str(error)


def test_mp4_cut_before_its_index_fails_to_open(tmp_path: Path) -> None:
    clip = encode_clip(tmp_path / "moov_last.mp4", _noise_frames(30))  # moov written at the end
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceOpenError, match="truncated") as info:
        open_source(clip)
    assert str(clip) in str(info.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("suffix", [".mkv", ".mp4", ".ts"])
def test_flipped_bytes_deliver_frames_before_damage_and_end(tmp_path: Path, suffix: str) -> None:
    images = _noise_frames(50)
    clip = _encode(tmp_path / f"clip{suffix}", images)
    with open_source(clip) as source:
        intact = [f.image for f in source]
    data = bytearray(clip.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = bytes(b ^ 0xFF for b in data[middle : middle + 2000])
    clip.write_bytes(bytes(data))

    with open_source(clip) as source:
        frames, error = _drain(source)  # an error or a clean end, never a hang or a crash
    assert error is None or isinstance(error, SourceDecodeError)
    assert len(frames) >= 20
    for frame in frames[:20]:  # the first ~40% of the bytes are intact: same pixels as before
        np.testing.assert_array_equal(frame.image, intact[frame.index])


# --------------------------------------------------------------------------- open errors


def test_open_errors_say_what_and_what_to_try(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n" * 20)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("no frames here")
    cases = {
        str(tmp_path / "missing.mp4"): ["No such file", "missing.mp4", "webcam:0"],
        str(text): ["not a video", "notes.txt", "media player"],
        str(empty): ["no images", "empty", ".png"],
        str(tmp_path / "frames" / "*.png"): ["No images", "*.png"],
        "foo://example.com/stream": ["Unknown URL scheme", "foo://", "rtsp://"],
    }
    for spec, phrases in cases.items():
        with pytest.raises(SourceOpenError) as info:
            open_source(spec)  # raised synchronously, by open_source itself
        for phrase in phrases:
            assert phrase in str(info.value), (spec, str(info.value))


def test_absent_camera_names_device_and_usual_causes() -> None:
    with pytest.raises(SourceOpenError) as info:
        open_source("webcam:9", SourceConfig(reconnect_seconds=0))
    message = str(info.value)
    assert "webcam:9" in message
    if sys.platform.startswith("linux"):
        for phrase in ("/dev/video9", "not connected", "another application", "permission"):
            assert phrase in message


def test_unknown_input_format_is_an_open_error(blank_clip: Path) -> None:
    with pytest.raises(SourceOpenError, match="input_format='nosuchformat'"):
        open_source(blank_clip, SourceConfig(input_format="nosuchformat"))


def test_config_rejects_typos_and_nonsense() -> None:
    with pytest.raises(pydantic.ValidationError):
        SourceConfig(queue_sise=4)
    with pytest.raises(pydantic.ValidationError):
        SourceConfig(queue_size=0)


# --------------------------------------------------------------------------- images


def _image_folder(folder: Path, count: int) -> list[np.ndarray]:
    """frame1.png .. frameN.png with one odd .bmp and a non-image; pixel value = 10 * position."""
    folder.mkdir()
    images = [np.full((30, 40, 3), 10 * k, np.uint8) for k in range(count)]
    for k, image in enumerate(images):
        _write_image(folder / f"frame{k + 1}{'.bmp' if k == 3 else '.png'}", image)
    (folder / "notes.txt").write_text("ignored")
    return images


def test_image_folder_in_natural_order(tmp_path: Path) -> None:
    images = _image_folder(tmp_path / "frames", 12)  # frame2 before frame10
    with open_source(tmp_path / "frames") as source:
        assert not source.live and source.info.frames == 12
        assert (source.info.width, source.info.height) == (40, 30)
        frames, error = _drain(source)
    assert error is None
    assert [f.index for f in frames] == list(range(12))
    assert all(f.pts is None and f.dropped == 0 for f in frames)
    for frame, image in zip(frames, images):
        np.testing.assert_array_equal(frame.image, image)


def test_image_glob_and_single_image(tmp_path: Path) -> None:
    images = _image_folder(tmp_path / "frames", 12)
    with open_source(str(tmp_path / "frames" / "frame1*.png")) as source:  # frame1, frame10..12
        assert [int(f.image[0, 0, 0]) for f in source] == [0, 90, 100, 110]
    with open_source(tmp_path / "frames" / "frame3.png") as source:
        (frame,) = list(source)
    assert frame.index == 0 and frame.pts is None
    np.testing.assert_array_equal(frame.image, images[2])


def test_broken_image_is_skipped_and_named_at_the_end(tmp_path: Path) -> None:
    _image_folder(tmp_path / "frames", 5)
    (tmp_path / "frames" / "frame3.png").write_bytes(b"not a png")
    with open_source(tmp_path / "frames") as source:
        frames, error = _drain(source)
    assert [f.index for f in frames] == [0, 1, 3, 4]  # indices stay positions
    assert isinstance(error, SourceDecodeError) and "frame3.png" in str(error) and "1 of 5" in str(error)


# --------------------------------------------------------------------------- threading, pacing, looping


def test_decodes_on_a_daemon_thread_with_auto_threading(blank_clip: Path) -> None:
    with open_source(blank_clip) as source:
        first = next(iter(source))
        (thread,) = _decode_threads(blank_clip)
        assert thread.daemon and thread is not threading.current_thread()
        assert source._producer._reader._stream.thread_type.name == "AUTO"  # noqa: SLF001 - the requirement itself
        assert isinstance(first.image, np.ndarray) and first.image.shape == (120, 160, 3)
    assert _decode_threads(blank_clip) == []


def test_padded_width_gives_contiguous_rgb(tmp_path: Path) -> None:
    clip = encode_clip(tmp_path / "w200.mkv", _flat_frames(5, width=200, base=100))  # 600-byte rows get padded
    with open_source(clip) as source:
        for frame in source:
            assert frame.image.flags.c_contiguous and frame.image.shape == (120, 200, 3)
            assert abs(int(frame.image[60, 100, 0]) - (100 + 4 * frame.index)) <= 3


def test_file_with_slow_consumer_drops_nothing(blank_clip: Path) -> None:
    seen = []
    with open_source(blank_clip, SourceConfig(queue_size=2)) as source:
        for frame in source:
            time.sleep(0.01)
            seen.append(frame)
        assert source.dropped == 0
    assert [f.index for f in seen] == list(range(30))
    assert all(f.dropped == 0 for f in seen)


def test_realtime_file_with_slow_consumer_drops_oldest(tmp_path: Path) -> None:
    clip = encode_clip(tmp_path / "fast.mkv", _flat_frames(40), fps=100)  # 0.4 s of video
    seen, ages = [], []
    with open_source(clip, SourceConfig(realtime=True, queue_size=2)) as source:
        assert source.live
        for frame in source:
            ages.append(time.time() - frame.capture_time)
            seen.append(frame)
            time.sleep(0.05)  # a consumer 5x slower than the source
        dropped = source.dropped
    indices = [f.index for f in seen]
    assert dropped > 0 and len(seen) + dropped == 40
    assert indices == sorted(indices) and indices[-1] == 39  # the newest frame always survives
    assert seen[-1].dropped == dropped
    assert [f.dropped for f in seen] == sorted(f.dropped for f in seen)
    assert max(ages[2:]) < 0.25  # without dropping, the later frames would be a second old


def test_realtime_paces_by_pts(tmp_path: Path) -> None:
    clip = encode_clip(tmp_path / "pace.mkv", _flat_frames(13), fps=25)  # 0.48 s from first to last pts
    with open_source(clip, SourceConfig(realtime=True, live=False)) as source:
        assert not source.live
        frames, error = _drain(source)
    assert error is None and len(frames) == 13
    wall = frames[-1].capture_time - frames[0].capture_time
    assert wall == pytest.approx(frames[-1].pts - frames[0].pts, abs=0.08)


def test_loop_replays_with_increasing_indices_and_pts(blank_clip: Path) -> None:
    frames = []
    with open_source(blank_clip, SourceConfig(loop=True)) as source:
        for frame in source:
            frames.append(frame)
            if len(frames) == 75:
                break
    assert [f.index for f in frames] == list(range(75))
    pts = [f.pts for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))
    assert pts[30] - pts[29] == pytest.approx(0.04)
    np.testing.assert_array_equal(frames[30].image, frames[0].image)


@pytest.mark.timeout(10)
def test_close_while_producer_blocked_on_full_queue(blank_clip: Path) -> None:
    source = open_source(blank_clip, SourceConfig(queue_size=1))
    next(iter(source))
    time.sleep(0.2)  # the decode thread is now waiting for room in the queue
    started = time.monotonic()
    source.close()
    source.close()  # idempotent
    assert time.monotonic() - started < 1.0
    assert _decode_threads(blank_clip) == []


@pytest.mark.timeout(10)
def test_close_while_consumer_blocked_waiting(tmp_path: Path) -> None:
    clip = encode_clip(tmp_path / "slow.mkv", _flat_frames(5), fps=1)  # one frame per second in real time
    source = open_source(clip, SourceConfig(realtime=True))
    received: list[Frame] = []
    consumer = threading.Thread(target=lambda: received.extend(source), daemon=True)
    consumer.start()
    time.sleep(0.3)  # frame 0 arrived; the consumer now waits ~1 s for frame 1
    started = time.monotonic()
    source.close()
    consumer.join(1.0)
    assert not consumer.is_alive() and time.monotonic() - started < 1.0
    assert [f.index for f in received] == [0]
    assert _decode_threads(clip) == []


# --------------------------------------------------------------------------- live network stream


class _TsServer:
    """MPEG-TS over real loopback TCP: one encoded session per accepted connection, then it stops.

    A plain socket listens (not PyAV's `tcp://...?listen=1`: PyAV 18 runs that accept with
    the GIL held, which would freeze the in-process client).
    """

    def __init__(self, sessions: int, frames: int, fps: int = 50) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(20)
        self.url = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, args=(sessions, frames, fps), daemon=True)
        self._thread.start()

    def _serve(self, sessions: int, frames: int, fps: int) -> None:
        try:
            for session in range(sessions):
                conn, _ = self._listener.accept()
                with conn, conn.makefile("wb") as wire:
                    self._stream(wire, _flat_frames(frames, base=40 + 120 * session), fps)
        except (OSError, av.error.FFmpegError):
            pass  # the client went away early: nothing left to serve
        finally:
            self._listener.close()

    @staticmethod
    def _stream(wire, images: list[np.ndarray], fps: int) -> None:  # noqa: ANN001 - a socket file
        with av.open(wire, "w", format="mpegts") as out:
            stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "tune": "zerolatency"})
            stream.width, stream.height, stream.pix_fmt = images[0].shape[1], images[0].shape[0], "yuv420p"
            for i, image in enumerate(images):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, fps)
                out.mux(stream.encode(frame))
                wire.flush()
                time.sleep(1 / fps)
            out.mux(stream.encode())

    def join(self) -> None:
        self._thread.join(5)


@pytest.mark.timeout(30)
def test_network_stream_lost_after_reconnect_window(caplog: pytest.LogCaptureFixture) -> None:
    server = _TsServer(sessions=1, frames=30)
    with caplog.at_level(logging.WARNING, logger="facetrack.sources"):
        with open_source(server.url, SourceConfig(reconnect_seconds=0.5)) as source:
            assert source.live and source.info.container == "mpegts"
            frames, error = _drain(source)
            lost_at = time.time()
    server.join()
    assert len(frames) >= 25
    assert [f.index for f in frames] == list(range(len(frames)))
    assert isinstance(error, SourceLostError) and "0.5 s" in str(error)
    assert any("reconnect" in r.getMessage() for r in caplog.records)
    assert lost_at - frames[-1].capture_time >= 0.5


@pytest.mark.timeout(30)
def test_network_stream_reconnects_and_keeps_counting() -> None:
    server = _TsServer(sessions=2, frames=20)
    seen = []
    with open_source(server.url, SourceConfig(reconnect_seconds=5)) as source:
        for frame in source:
            seen.append(frame)
            if frame.image.mean() > 150:  # second session: frames start at 160
                break
    server.join()
    assert [f.index for f in seen] == list(range(len(seen)))
    assert len(seen) > 15 and seen[0].image.mean() < 100
    pts = [f.pts for f in seen]
    assert all(b > a for a, b in zip(pts, pts[1:]))


@pytest.mark.timeout(30)
def test_network_stream_read_as_file_ends_cleanly() -> None:
    server = _TsServer(sessions=1, frames=20)
    with open_source(server.url, SourceConfig(live=False, queue_size=2)) as source:
        assert not source.live
        frames, error = _drain(source)
        assert source.dropped == 0
    server.join()
    assert error is None and [f.index for f in frames] == list(range(20))


def test_transport_stream_cut_inside_a_packet_is_truncated(tmp_path: Path) -> None:
    clip = encode_clip(tmp_path / "full.ts", _noise_frames(30))  # TS declares no duration to compare with
    data = clip.read_bytes()
    assert len(data) % 188 == 0
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) // 2 // 188 * 188 + 94])
    with open_source(cut) as source:
        frames, error = _drain(source)
    assert 0 < len(frames) < 30
    assert isinstance(error, SourceDecodeError) and "MPEG-TS packet" in str(error)
