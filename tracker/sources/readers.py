"""Every way frames come into the tracker: video files, cameras, network streams, images.

A source decodes on its own daemon thread (PyAV, `thread_type="AUTO"`) and converts to
RGB there, so the tracking thread only tracks. Frames cross a bounded queue:

- file sources apply back-pressure and never drop: one `Frame` per decoded frame, in order;
- live sources (camera, network, a file paced in real time) never fall behind: when the
  consumer is slow the oldest queued frame is discarded and counted in `dropped`.

Open errors are raised by `open_source` itself; errors while reading (corrupt or
truncated file, lost stream) are raised by the iterator after every frame decoded before.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol

import av
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from facetrack.tracker.core.errors import SourceDecodeError, SourceLostError, SourceOpenError
from facetrack.tracker.core.schema import SourceInfo

logger = logging.getLogger("facetrack.sources")

IMAGE_SUFFIXES: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm",
)
"""Still-image files: a single one, a folder of them or a glob over them is an image source."""

NETWORK_SCHEMES: tuple[str, ...] = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")
"""URL schemes opened as live network streams."""

OPEN_TIMEOUT = 10.0
"""Seconds a camera or network stream may take to open (PyAV interrupts FFmpeg after it)."""
READ_TIMEOUT = 5.0
"""Seconds without data before a live source counts as dropped (then it reconnects)."""
RETRY_INTERVAL = 0.25
"""Seconds between reconnection attempts of a live source."""
TRUNCATION_TOLERANCE = 0.1
"""Seconds of slack, on top of two frame durations, before a short file counts as truncated."""
MAX_PACING_LAG = 0.1
"""A real-time file more than this far behind its clock re-anchors instead of bursting."""
MIN_PTS_STEP = 1e-3
"""Seconds between the last frame of a pass and the first of the next when the rate is unknown."""
JOIN_TIMEOUT = 2.0
"""Longest `close()` waits for the decode thread (one blocked in a network read ends by itself)."""

SourceKind = Literal["file", "images", "camera", "network"]
_LIVE_KINDS: frozenset[str] = frozenset({"camera", "network"})
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_GLOB_CHARS = re.compile(r"[*?\[]")


class SourceConfig(BaseModel):
    """How a source is read; the defaults suit a file or a local webcam."""

    model_config = ConfigDict(extra="forbid")

    queue_size: int = Field(default=8, ge=1, description="Bounded queue between decode thread and consumer.")
    realtime: bool = Field(default=False, description="Pace a file by its pts, as a live source would deliver it.")
    live: bool | None = Field(
        default=None,
        description="Override: None decides from the spec (files False; webcam/network True; realtime file True).",
    )
    loop: bool = Field(
        default=False, description="Replay a file forever (soak tests); indices and pts keep increasing."
    )
    reconnect_seconds: float = Field(
        default=5.0, ge=0.0, description="Live: how long to retry after the source drops before SourceLostError."
    )
    input_format: str | None = Field(
        default=None, description='FFmpeg input format, e.g. "v4l2"; cameras default per platform.'
    )
    input_options: dict[str, str] = Field(
        default_factory=dict, description='Passed to av.open(options=...), e.g. {"video_size": "1280x720"}.'
    )


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame, already RGB, as the tracker consumes it."""

    index: int
    """0-based index of the decoded frame (keeps increasing across loops and reconnects)."""
    pts: float | None
    """Presentation time in seconds, None if unknown (images, raw streams)."""
    capture_time: float
    """time.time() when the frame left the decoder."""
    image: np.ndarray
    """HxWx3 uint8 RGB, C-contiguous."""
    dropped: int
    """Cumulative frames the source dropped so far (live only; 0 for files)."""


@dataclass(frozen=True)
class _Target:
    """A parsed spec: what to open and how."""

    kind: SourceKind
    uri: str
    url: str = ""
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    images: tuple[Path, ...] = ()


# --------------------------------------------------------------------------- spec parsing


def _natural_key(path: Path) -> list[int | str]:
    """Sort frame2.png before frame10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _image_folder(uri: str, folder: Path) -> _Target:
    images = sorted((p for p in folder.iterdir() if _is_image(p)), key=_natural_key)
    if not images:
        raise SourceOpenError(
            f"Folder '{folder}' contains no images ({', '.join(IMAGE_SUFFIXES)}). Put the frames there "
            "(e.g. 000001.png, 000002.png ...), or pass a video file, a glob such as 'frames/*.png', or webcam:0."
        )
    return _Target(kind="images", uri=uri, images=tuple(images))


def _image_glob(uri: str, pattern: str) -> _Target:
    matches = [Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True)]
    images = sorted((p for p in matches if _is_image(p)), key=_natural_key)
    if not images:
        found = f"{len(matches)} files match but none is an image" if matches else "nothing matches"
        raise SourceOpenError(
            f"No images for the pattern '{pattern}': {found} (image types: {', '.join(IMAGE_SUFFIXES)}). "
            "Check the pattern and quote it in a shell; a video file is passed by its own path."
        )
    return _Target(kind="images", uri=uri, images=tuple(images))


def _camera(uri: str, device: str, config: SourceConfig) -> _Target:
    """Map `webcam:N` / a device path to the platform's capture format and device name."""
    if sys.platform.startswith("linux"):
        fmt, url = "v4l2", f"/dev/video{device}" if device.isdigit() else device
    elif sys.platform == "darwin":
        fmt, url = "avfoundation", device if ":" in device else f"{device}:none"
    elif sys.platform == "win32":
        if device.isdigit() and config.input_format is None:
            raise SourceOpenError(
                f"{uri}: DirectShow opens cameras by name, not number. Use webcam:NAME, e.g. "
                "webcam:\"Integrated Camera\" (list them with: ffmpeg -list_devices true -f dshow -i dummy)."
            )
        fmt, url = "dshow", device if device.startswith("video=") else f"video={device}"
    else:
        raise SourceOpenError(f"{uri}: no camera support on {sys.platform}; set SourceConfig.input_format.")
    return _Target(
        kind="camera", uri=uri, url=url, format=config.input_format or fmt, options=dict(config.input_options)
    )


def _network(uri: str, scheme: str, config: SourceConfig) -> _Target:
    if scheme not in NETWORK_SCHEMES:
        raise SourceOpenError(
            f"Unknown URL scheme '{scheme}://' in '{uri}'. Supported streams: "
            f"{', '.join(s + '://' for s in NETWORK_SCHEMES)}; a local file or folder is passed as a plain path, "
            "a camera as webcam:0."
        )
    # RTSP over UDP loses packets (smeared frames) on busy networks; TCP is the safer default.
    defaults = {"rtsp_transport": "tcp"} if scheme in ("rtsp", "rtsps") else {}
    return _Target(
        kind="network", uri=uri, url=uri, format=config.input_format, options=defaults | config.input_options
    )


def _resolve(spec: str | os.PathLike[str], config: SourceConfig) -> _Target:
    """Decide what kind of source a spec names; raises SourceOpenError for nonsense."""
    uri = os.fspath(spec)
    if match := _URL.match(uri):
        return _network(uri, match.group(1).lower(), config)
    if uri.startswith("webcam:"):
        return _camera(uri, uri.removeprefix("webcam:"), config)
    if uri.startswith("/dev/video"):
        return _camera(uri, uri, config)
    path = Path(uri).expanduser()
    if path.is_dir():
        return _image_folder(uri, path)
    if not path.exists():
        if _GLOB_CHARS.search(uri):
            return _image_glob(uri, uri)
        raise SourceOpenError(
            f"No such file or folder: '{path}' (relative paths start at {os.getcwd()}). Check the spelling; "
            "a camera is webcam:0, a stream a URL such as rtsp://host/path."
        )
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _Target(kind="images", uri=uri, images=(path,))
    return _Target(
        kind="file", uri=uri, url=str(path), format=config.input_format, options=dict(config.input_options)
    )


def _is_live(target: _Target, config: SourceConfig) -> bool:
    if config.live is not None:
        return config.live
    return target.kind in _LIVE_KINDS or (target.kind == "file" and config.realtime)


# --------------------------------------------------------------------------- readers


class _Reader(Protocol):
    """One opened source pass: yields (rgb image, pts seconds or None) until its end."""

    info: SourceInfo
    frame_duration: float

    def frames(self) -> Iterator[tuple[np.ndarray, float | None]]: ...

    def close(self) -> None: ...


def _open_failure(target: _Target, exc: Exception) -> SourceOpenError:
    """Turn FFmpeg's terse open error into a message that says what to try."""
    if target.kind == "camera":
        return SourceOpenError(
            f"Could not open camera {target.uri} ({target.format} device '{target.url}'): {exc}. Usual causes: "
            "the camera is not connected, another application (video call, browser tab) is using it, or this user "
            "lacks permission (Linux: the 'video' group; macOS: camera access for the terminal in Privacy "
            "settings). Other cameras are webcam:1, webcam:2, ..."
        )
    if target.kind == "network":
        if isinstance(exc, av.error.ProtocolNotFoundError):
            return SourceOpenError(f"This PyAV/FFmpeg build cannot read '{target.uri}': {exc}.")
        return SourceOpenError(
            f"Could not open stream '{target.uri}': {exc}. Check the URL and credentials, that the server "
            "is running and reachable from here, and that a firewall does not block it."
        )
    if isinstance(exc, av.error.InvalidDataError):
        return SourceOpenError(
            f"'{target.url}' is not a video FFmpeg can read, or it is truncated (an mp4 cut off before its "
            f"index, the 'moov' atom, cannot be opened): {exc}. Check that it plays in a media player; "
            "re-download or re-export it."
        )
    return SourceOpenError(f"Could not open '{target.url}': {exc}.")


def _open_container(target: _Target, timeout: float) -> av.container.InputContainer:
    kwargs: dict[str, object] = {"format": target.format, "options": target.options}
    if target.kind in _LIVE_KINDS:
        kwargs["timeout"] = (timeout, READ_TIMEOUT)
    try:
        return av.open(target.url, **kwargs)
    except av.error.FFmpegError as exc:
        raise _open_failure(target, exc) from exc
    except ValueError as exc:  # PyAV's own: an input_format FFmpeg does not know
        raise SourceOpenError(f"Cannot open '{target.uri}' with input_format={target.format!r}: {exc}.") from exc


def _parse_hms(text: str) -> float | None:
    """Matroska's per-stream DURATION tag, '00:00:02.000000000'."""
    try:
        hours, minutes, seconds = text.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _declared_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """The video stream's duration as the file declares it (not the frame count, which lies)."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if tag := stream.metadata.get("DURATION"):
        return _parse_hms(tag)
    # A container duration may include a longer audio track; trust it only without other streams.
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def _declared_start(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.start_time is not None:
        return float(stream.start_time * stream.time_base)
    return (container.start_time or 0) / av.time_base


class _VideoReader:
    """One opened container (file, camera or stream): decodes its first video stream."""

    def __init__(self, target: _Target, live: bool, timeout: float) -> None:
        self._target = target
        self._container = _open_container(target, timeout)
        if not self._container.streams.video:
            kinds = ", ".join(s.type for s in self._container.streams) or "none"
            self._container.close()
            raise SourceOpenError(f"'{target.uri}' has no video stream (streams: {kinds}); pass a video.")
        self._stream = self._container.streams.video[0]
        if self._stream.codec_context is None:
            self._container.close()
            raise SourceOpenError(
                f"'{target.uri}': its video stream has no codec this PyAV/FFmpeg build can decode "
                "(the file is damaged, or uses an unsupported codec); re-export it as H.264 or VP9."
            )
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.frame_duration = 1.0 / float(rate) if rate else 0.0
        duration = _declared_duration(self._container, self._stream)
        self._declared_end = None if duration is None else _declared_start(self._container, self._stream) + duration
        ctx = self._stream.codec_context
        self.info = SourceInfo(
            uri=target.uri,
            live=live,
            width=ctx.width,
            height=ctx.height,
            fps=float(rate) if rate else None,
            codec=ctx.name,
            container=self._container.format.name,
            duration=duration,
            frames=self._stream.frames or None,
        )

    def frames(self) -> Iterator[tuple[np.ndarray, float | None]]:
        """Every decodable frame; afterwards SourceDecodeError if any packet failed or the file is short.

        A packet the decoder rejects is skipped and decoding goes on; a read error ends
        the pass after draining the frames the decoder still holds.
        """
        decoded, failures, last_pts = 0, 0, None
        first_failure: Exception | None = None
        packets = self._container.demux(self._stream)  # ends with an empty packet that flushes the decoder
        while True:
            try:
                packet = next(packets, None)
            except av.error.FFmpegError as exc:
                yield from self._drain()
                raise SourceDecodeError(
                    f"'{self._target.uri}': reading stopped after {decoded} frames: {exc}. The file is corrupt "
                    "or the stream broke off; every frame before the damage was delivered."
                ) from exc
            if packet is None:
                break
            try:
                batch = self._stream.decode(packet)
            except av.error.FFmpegError as exc:
                failures += 1
                first_failure = first_failure or exc
                logger.debug("%s: skipping a packet the decoder rejected: %s", self._target.uri, exc)
                continue
            for frame in batch:
                decoded += 1
                last_pts = frame.time if frame.time is not None else last_pts
                yield self._rgb(frame), frame.time
        if failures:
            raise SourceDecodeError(
                f"'{self._target.uri}': {failures} damaged packets were skipped ({first_failure}); "
                f"{decoded} frames decoded. The file is corrupt; re-download or re-export it."
            ) from first_failure
        if self._target.kind == "file":
            self._check_complete(decoded, last_pts)

    def _drain(self) -> Iterator[tuple[np.ndarray, float | None]]:
        """Frames the decoder still holds when reading stops early."""
        try:
            batch = self._stream.decode(None)
        except av.error.FFmpegError:
            return
        for frame in batch:
            yield self._rgb(frame), frame.time

    @staticmethod
    def _rgb(frame: av.VideoFrame) -> np.ndarray:
        # Padded rows (width 700 -> 2112-byte lines) make to_ndarray a strided view; copy only then.
        return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))

    def _check_complete(self, decoded: int, last_pts: float | None) -> None:
        """FFmpeg often ends a cut file silently; compare the decoded end with the declared one."""
        if not decoded:
            raise SourceDecodeError(
                f"'{self._target.uri}': not a single frame could be decoded; the file is damaged or its codec "
                f"({self.info.codec}) is not supported by this PyAV build."
            )
        advice = f"All {decoded} decodable frames were delivered; re-download or re-export the file."
        if self._ends_inside_ts_packet():
            raise SourceDecodeError(
                f"'{self._target.uri}' ends inside an MPEG-TS packet: the file looks truncated (an interrupted "
                f"download, copy or recording). {advice}"
            )
        if self._declared_end is None or last_pts is None:
            return
        ended = last_pts + self.frame_duration
        if self._declared_end - ended > 2 * self.frame_duration + TRUNCATION_TOLERANCE:
            raise SourceDecodeError(
                f"'{self._target.uri}' ended at {ended:.1f} s of {self._declared_end:.1f} s declared: the file "
                f"looks truncated (an interrupted download, copy or recording). {advice}"
            )

    def _ends_inside_ts_packet(self) -> bool:
        """MPEG-TS declares no duration, but it is a run of 188-byte packets (192 in M2TS).

        A file cut at a packet boundary still passes: that is indistinguishable from a short recording.
        """
        if self._container.format.name != "mpegts":
            return False
        size = os.path.getsize(self._target.url)
        return size % 188 != 0 and size % 192 != 0

    def close(self) -> None:
        self._container.close()


def _decode_image(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))


class _ImageReader:
    """A still image, a folder or a glob: index = position, no pts."""

    frame_duration = 0.0

    def __init__(self, target: _Target, live: bool) -> None:
        self._target = target
        try:
            first = _decode_image(target.images[0])
        except (av.error.FFmpegError, StopIteration, IndexError) as exc:
            raise SourceOpenError(
                f"'{target.images[0]}' is not an image FFmpeg can decode ({exc or 'no picture'}); "
                "check the file or remove it from the sequence."
            ) from exc
        self.info = SourceInfo(
            uri=target.uri,
            live=live,
            width=first.shape[1],
            height=first.shape[0],
            container="images",
            frames=len(target.images),
        )

    def frames(self) -> Iterator[tuple[np.ndarray, None]]:
        """Images in order; a broken one ends the sequence (indices must stay positions)."""
        for position, path in enumerate(self._target.images):
            try:
                image = _decode_image(path)
            except (av.error.FFmpegError, StopIteration, IndexError) as exc:
                raise SourceDecodeError(
                    f"Image {position} of '{self._target.uri}', '{path}', cannot be decoded ({exc or 'no picture'}); "
                    f"the {position} images before it were delivered. Fix or remove it."
                ) from exc
            yield image, None

    def close(self) -> None:
        """Nothing stays open between images."""


def _open_reader(target: _Target, live: bool, timeout: float = OPEN_TIMEOUT) -> _Reader:
    if target.kind == "images":
        return _ImageReader(target, live)
    return _VideoReader(target, live, timeout)


# --------------------------------------------------------------------------- queue and thread


class _FrameQueue:
    """Bounded hand-off from the decode thread to the consumer.

    `drop_oldest=False` blocks the producer when full (files lose nothing);
    `drop_oldest=True` discards the oldest queued frame instead (live stays current).
    """

    def __init__(self, size: int, drop_oldest: bool) -> None:
        self._size = size
        self._drop_oldest = drop_oldest
        self._items: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._finished = False
        self._error: BaseException | None = None
        self.dropped = 0

    def put(self, frame: Frame) -> bool:
        """Queue a frame; False once the consumer closed (the producer should stop)."""
        with self._cond:
            while not self._drop_oldest and len(self._items) >= self._size and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            if len(self._items) >= self._size:  # only when dropping: make room by losing the oldest
                self._items.popleft()
                self.dropped += 1
            if self._drop_oldest:
                frame = replace(frame, dropped=self.dropped)
            self._items.append(frame)
            self._cond.notify_all()
            return True

    def get(self) -> Frame | None:
        """Next frame; None at the end or after close; the producer's error once queued frames are out."""
        with self._cond:
            while not self._items and not self._finished and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            if self._items:
                frame = self._items.popleft()
                self._cond.notify_all()
                return frame
            error, self._error = self._error, None
        if error is not None:
            raise error
        return None

    def finish(self, error: BaseException | None) -> None:
        """The producer is done; `error` (if any) reaches the consumer after the queued frames."""
        with self._cond:
            self._finished = True
            self._error = error
            self._cond.notify_all()

    def close(self) -> None:
        """The consumer is done: wake both sides and forget queued frames."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()


class _Producer:
    """The decode thread: pulls frames from readers, numbers and paces them, feeds the queue.

    It also owns the policies that span reader passes: looping a file, and reconnecting
    a live source that dropped.
    """

    def __init__(
        self,
        reader: _Reader,
        reopen: Callable[[float], _Reader],
        queue: _FrameQueue,
        *,
        uri: str,
        loop: bool,
        pace: bool,
        reconnect_seconds: float | None,
    ) -> None:
        self._reader = reader
        self._reopen = reopen
        self._queue = queue
        self._uri = uri
        self._loop = loop
        self._pace = pace
        self._reconnect_seconds = reconnect_seconds
        self._stop = threading.Event()
        self._next_index = 0
        self._pts_offset = 0.0
        self._last_pts: float | None = None
        self._rebase = False
        self._clock: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"facetrack-source {uri}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; safe from any thread, any number of times."""
        self._stop.set()
        self._queue.close()

    def join(self, timeout: float) -> bool:
        """Wait for the thread; True when it ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._pump()
        except Exception as exc:  # everything reaches the consumer, after the frames before it
            self._queue.finish(exc)
        else:
            self._queue.finish(None)
        finally:
            self._reader.close()

    def _pump(self) -> None:
        while not self._stop.is_set():
            try:
                for image, pts in self._reader.frames():
                    if not self._emit(image, pts):
                        return
            except SourceDecodeError as exc:
                if self._reconnect_seconds is None:
                    raise
                reason = str(exc)
            else:
                if self._reconnect_seconds is None:
                    if not self._loop:
                        return
                    self._replay()
                    continue
                reason = "the stream ended"
            if not self._reconnect(reason):
                return

    def _emit(self, image: np.ndarray, pts: float | None) -> bool:
        if pts is not None:
            if self._rebase and self._last_pts is not None:
                step = self._reader.frame_duration or MIN_PTS_STEP
                self._pts_offset = self._last_pts + step - pts
                self._rebase = False
            pts += self._pts_offset
            if self._pace and not self._wait_until(pts):
                return False
            self._last_pts = pts
        frame = Frame(index=self._next_index, pts=pts, capture_time=time.time(), image=image, dropped=0)
        self._next_index += 1
        return self._queue.put(frame)

    def _wait_until(self, pts: float) -> bool:
        """Real-time pacing: hold the frame until its pts on the wall clock; False if stopped."""
        now = time.monotonic()
        if self._clock is None or now - (self._clock + pts) > MAX_PACING_LAG:
            self._clock = now - pts
        delay = self._clock + pts - now
        return delay <= 0 or not self._stop.wait(delay)

    def _replay(self) -> None:
        """Loop: start the file again; pts continue after the last frame."""
        self._reader.close()
        self._reader = self._reopen(OPEN_TIMEOUT)
        self._rebase = True

    def _reconnect(self, reason: str) -> bool:
        """Reopen a dropped live source until `reconnect_seconds` pass; False if stopped meanwhile."""
        seconds = self._reconnect_seconds or 0.0
        logger.warning("%s: %s; trying to reconnect for %.1f s", self._uri, reason, seconds)
        self._reader.close()
        deadline = time.monotonic() + seconds
        last_error: Exception | None = None
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self._reader = self._reopen(max(remaining, RETRY_INTERVAL))
            except SourceOpenError as exc:
                last_error = exc
                self._stop.wait(min(RETRY_INTERVAL, max(deadline - time.monotonic(), 0.0)))
                continue
            logger.info("%s: reconnected", self._uri)
            self._rebase = True
            return True
        if self._stop.is_set():
            return False
        attempt = f" (last attempt: {last_error})" if last_error else ""
        raise SourceLostError(
            f"'{self._uri}' stopped delivering frames ({reason}) and did not come back within {seconds:.1f} s"
            f"{attempt}. Check the camera or stream, or raise SourceConfig.reconnect_seconds."
        )


# --------------------------------------------------------------------------- public API


class FrameSource:
    """Frames of one source, decoded ahead on a daemon thread; iterate, then close (or use `with`).

    Build it with `open_source`. Iterating yields `Frame`s until the source ends, then raises
    the source's error (SourceDecodeError, SourceLostError), if any.
    """

    def __init__(self, target: _Target, reader: _Reader, config: SourceConfig, live: bool) -> None:
        self.info: SourceInfo = reader.info
        self.live: bool = live
        self._queue = _FrameQueue(config.queue_size, drop_oldest=live)
        self._producer = _Producer(
            reader,
            lambda timeout: _open_reader(target, live, timeout),
            self._queue,
            uri=target.uri,
            loop=config.loop,
            pace=config.realtime and target.kind == "file",
            # live=False on a URL reads it like a file: its end is the end, not a drop.
            reconnect_seconds=config.reconnect_seconds if live and target.kind in _LIVE_KINDS else None,
        )
        # A source dropped without close() must not leave a thread blocked on a full queue.
        self._finalizer = weakref.finalize(self, self._producer.stop)
        self._producer.start()

    @property
    def dropped(self) -> int:
        """Cumulative frames discarded because the consumer was slower than a live source."""
        return self._queue.dropped

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self._queue.get()) is not None:
            yield frame

    def close(self) -> None:
        """Stop decoding and release the source; idempotent, never hangs."""
        self._finalizer()
        if not self._producer.join(JOIN_TIMEOUT):
            logger.debug("%s: decode thread still in a blocking read; it ends at its timeout", self.info.uri)

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_source(spec: str | os.PathLike[str], config: SourceConfig | None = None) -> FrameSource:
    """Open a file, camera (`webcam:0`, `/dev/video0`), stream URL, image, folder or glob.

    Raises SourceOpenError here, synchronously, if it cannot be opened.
    """
    config = config or SourceConfig()
    target = _resolve(spec, config)
    live = _is_live(target, config)
    reader = _open_reader(target, live)
    info = reader.info
    logger.info("opened %s: %s, %dx%d, live=%s", target.uri, target.kind, info.width, info.height, live)
    return FrameSource(target, reader, config, live)


def probe_source(spec: str | os.PathLike[str], config: SourceConfig | None = None) -> SourceInfo:
    """Container metadata without decoding (for `facetrack info`); raises SourceOpenError."""
    config = config or SourceConfig()
    target = _resolve(spec, config)
    reader = _open_reader(target, _is_live(target, config))
    reader.close()
    return reader.info
