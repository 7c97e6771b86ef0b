"""The PyAV reader of video files, cameras and network streams: RGB frames with their pts, in display
orientation, truncation checks, one open timeout.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Protocol

import av
import numpy as np

from facetrack.tracker.core.errors import SourceDecodeError, SourceOpenError
from facetrack.tracker.core.schema import SourceInfo
from facetrack.tracker.sources.config import LIVE_KINDS, READ_TIMEOUT, TRUNCATION_TOLERANCE
from facetrack.tracker.sources.orientation import display_rotation, display_size, rotate_image
from facetrack.tracker.sources.resolve import Target

logger = logging.getLogger("facetrack.sources")


class Reader(Protocol):
    """One opened source pass: yields (rgb image, pts seconds or None, source name or None) until its end; the
    image is None for a still image that could not be decoded (skipped: its index stays unused); the name is
    the image's path relative to the input (None from a video: the whole stream is one source)."""

    info: SourceInfo
    frame_duration: float

    def frames(self) -> Iterator[tuple[np.ndarray | None, float | None, str | None]]: ...

    def close(self) -> None: ...


def _open_failure(target: Target, exc: Exception) -> SourceOpenError:
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


def _open_container(target: Target, timeout: float) -> av.container.InputContainer:
    kwargs: dict[str, object] = {"format": target.format, "options": target.options}
    if target.kind in LIVE_KINDS:
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


class VideoReader:
    """One opened container (file, camera or stream): decodes its first video stream."""

    def __init__(self, target: Target, live: bool, timeout: float, rotate: int | None = None) -> None:
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
        # frame threads: 1.5x faster decoding; a damaged packet can then cost one more frame (RELIABILITY.md)
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.frame_duration = 1.0 / float(rate) if rate else 0.0
        duration = _declared_duration(self._container, self._stream)
        self._declared_end = None if duration is None else _declared_start(self._container, self._stream) + duration
        ctx = self._stream.codec_context
        # a phone's portrait clip is landscape pictures plus a display matrix: results are in display orientation
        if rotate is None:
            rotate = display_rotation(target.url, target.format, target.options) if target.kind == "file" else 0
        self.rotation = rotate
        width, height = display_size(ctx.width, ctx.height, rotate)
        self.info = SourceInfo(
            uri=target.uri,
            live=live,
            width=width,
            height=height,
            fps=float(rate) if rate else None,
            codec=ctx.name,
            container=self._container.format.name,
            duration=duration,
            frames=self._stream.frames or None,
            rotation=rotate,
            coded_width=ctx.width,
            coded_height=ctx.height,
        )

    def frames(self) -> Iterator[tuple[np.ndarray, float | None, None]]:
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
                yield self._rgb(frame), frame.time, None
        if failures:
            raise SourceDecodeError(
                f"'{self._target.uri}': {failures} damaged packets were skipped ({first_failure}); "
                f"{decoded} frames decoded. The file is corrupt; re-download or re-export it."
            ) from first_failure
        if self._target.kind == "file":
            self._check_complete(decoded, last_pts)

    def _drain(self) -> Iterator[tuple[np.ndarray, float | None, None]]:
        """Frames the decoder still holds when reading stops early."""
        try:
            batch = self._stream.decode(None)
        except av.error.FFmpegError:
            return
        for frame in batch:
            yield self._rgb(frame), frame.time, None

    def _rgb(self, frame: av.VideoFrame) -> np.ndarray:
        # Padded rows (width 700 -> 2112-byte lines) make to_ndarray a strided view; copy only then.
        return rotate_image(np.ascontiguousarray(frame.to_ndarray(format="rgb24")), self.rotation)

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
