"""Overlay video: the input with what was tracked drawn over it, frame for frame, at the input's timing.

- `render_video` (`facetrack render SOURCE RESULTS`) decodes the source again and copies
  every frame's pts and the stream's time base to the output, so the overlay lines up
  with the original in an editor.
- `RenderSink` (`facetrack run ... --render FILE`) draws while tracking. The Sink protocol
  carries results, not pictures, so the run's source is wrapped in a `FrameTap` that
  keeps the last few decoded frames for sinks that draw on them (the preview uses it too).

Output: H.264, yuv420p, in .mp4/.m4v/.mov (their muxers keep the time base exactly),
written as `NAME.partial` and renamed when complete, as the file sinks do. yuv420p
needs even sizes: an odd width or height gets one replicated pixel column or row.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from facetrack.tracker.core.errors import SinkError
from facetrack.tracker.core.schema import FrameResult, StreamMetadata
from facetrack.tracker.sources.config import Frame
from facetrack.tracker.sources.frame_source import FrameSource
from facetrack.tracker.viz.overlay import OverlayStyle, draw_overlay

log = logging.getLogger("facetrack.render")

CONTAINER_FORMATS: dict[str, str] = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}
LIVE_TIME_BASE = Fraction(1, 90000)
"""Time base of a live source's overlay (camera pts are seconds; 90 kHz keeps them to 11 us)."""
STILLS_RATE = Fraction(2)
"""Frames per second of an overlay made from still images (they have no timing of their own)."""


class OverlayWriter:
    """An H.264 encoder that stamps each frame with the pts it is given, in the given time base."""

    def __init__(self, path: str | os.PathLike[str], width: int, height: int, time_base: Fraction,
                 rate: Fraction | None = None, crf: int = 20, preset: str = "veryfast") -> None:
        self.path = Path(path)
        fmt = CONTAINER_FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise SinkError(f"cannot write an overlay video to {self.path}: use one of {', '.join(CONTAINER_FORMATS)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._container = av.open(str(self._partial), "w", format=fmt)
        self._stream = self._container.add_stream("libx264", rate=rate or Fraction(25))
        self._stream.width, self._stream.height = width + width % 2, height + height % 2
        self._stream.pix_fmt = "yuv420p"
        self._stream.time_base = time_base
        self._stream.codec_context.time_base = time_base
        self._stream.options = {"crf": str(crf), "preset": preset}
        self.time_base = time_base
        self.frames = 0
        self._last_pts: int | None = None

    def write(self, image: np.ndarray, pts: int) -> None:
        """Encode one RGB frame at `pts` (bumped by one tick if not after the previous frame's)."""
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        padded = _even(image)
        if padded.shape[1] != self._stream.width or padded.shape[0] != self._stream.height:
            raise SinkError(f"frame of {image.shape[1]}x{image.shape[0]} in an overlay video of "
                            f"{self._stream.width}x{self._stream.height}: the source changed size")
        frame = av.VideoFrame.from_ndarray(padded, format="rgb24")
        frame.pts = pts
        frame.time_base = self.time_base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._last_pts = pts
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder, finish the file and give it its name."""
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        os.replace(self._partial, self.path)

    def abort(self, remove: bool = False) -> None:
        """Close without a result: the `.partial` file stays, as a run cut short leaves one (unless `remove`)."""
        with suppress(av.error.FFmpegError, OSError):
            self._container.close()
        if remove:
            self._partial.unlink(missing_ok=True)


def _even(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return image
    return np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def render_video(source: str | os.PathLike[str], results: Sequence[FrameResult], out: str | os.PathLike[str],
                 style: OverlayStyle | None = None, rotate: int | None = None) -> int:
    """Draw `results` over every frame of the video `source` into `out`; returns the frames written.

    Frames are matched by index; a frame without a result is copied unchanged, so the
    output always has the input's frame count, pts and time base. Pictures are turned as
    the tracker turned them: by the file's display matrix, or `rotate` degrees clockwise.
    """
    by_index = {result.frame_index: result for result in results}
    with av.open(os.fspath(source)) as container:
        if not container.streams.video:
            raise SinkError(f"{source} has no video stream to draw on")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        ctx = stream.codec_context
        decoded = container.decode(stream)
        first = next(decoded, None)
        if rotate is None:  # PyAV's angle is counter-clockwise
            rotate = 0 if first is None else round(-float(first.rotation or 0) / 90) % 4 * 90
        width, height = (ctx.height, ctx.width) if rotate % 180 else (ctx.width, ctx.height)
        _check_size(by_index.values(), width, height, source)
        time_base = stream.time_base or Fraction(1, 90000)
        writer = OverlayWriter(out, width, height, time_base, stream.average_rate)
        try:
            for index, frame in enumerate(itertools.chain([first] if first is not None else [], decoded)):
                pts = frame.pts if frame.pts is not None else round(index / (stream.average_rate or 25) / time_base)
                image = frame.to_ndarray(format="rgb24")
                if rotate:
                    image = np.ascontiguousarray(np.rot90(image, k=-(rotate // 90)))
                writer.write(draw_overlay(image, by_index.get(index), style), pts)
        except BaseException:
            writer.abort()
            raise
        writer.close()
    if by_index and max(by_index) >= writer.frames:
        log.warning("%s has %d frames; results beyond them were not drawn", source, writer.frames)
    return writer.frames


def _check_size(results: Iterable[FrameResult], width: int, height: int, source: object) -> None:
    """Results tracked on another video would be drawn in the wrong places: refuse them."""
    first = next(iter(results), None)
    if first is not None and (first.width, first.height) != (width, height):
        raise SinkError(f"the results are for {first.width}x{first.height} frames but {source} is "
                        f"{width}x{height}: pass the video the results were tracked from")


class FrameTap(FrameSource):
    """A FrameSource that keeps its last few frames for sinks that draw on them.

    Wraps an opened source (it does not open a second decoder); pass it to
    `Tracker.run` in place of the source and to `RenderSink` / `PreviewSink`.
    """

    def __init__(self, source: FrameSource, keep: int = 8) -> None:
        # FrameSource.__init__ is not called: it would start a second decoder.
        self.info = source.info
        self.live = source.live
        self._source = source
        self._keep = keep
        self._frames: OrderedDict[int, Frame] = OrderedDict()

    @property
    def dropped(self) -> int:
        return self._source.dropped

    def __iter__(self) -> Iterator[Frame]:
        for frame in self._source:
            self._frames[frame.index] = frame
            while len(self._frames) > self._keep:
                self._frames.popitem(last=False)
            yield frame

    def frame(self, index: int) -> Frame | None:
        """The decoded frame with this index, if still kept."""
        return self._frames.get(index)

    def close(self) -> None:
        self._source.close()


class RenderSink:
    """Writes the overlay video while tracking (`facetrack run ... --render FILE`).

    A file source keeps its own pts and time base (read from the container at start);
    a live source's timing is kept at 90 kHz from its first frame; still images play at
    `STILLS_RATE`.
    """

    stage = "render"

    def __init__(self, path: str | os.PathLike[str], tap: FrameTap, style: OverlayStyle | None = None) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in CONTAINER_FORMATS:
            raise SinkError(f"cannot write an overlay video to {self.path}: use one of {', '.join(CONTAINER_FORMATS)}")
        self._tap = tap
        self._style = style or OverlayStyle()
        self._writer: OverlayWriter | None = None
        self._time_base = LIVE_TIME_BASE
        self._rate: Fraction | None = None
        self._origin: float | None = None
        self._relative = True
        self._started = False

    def start(self, metadata: StreamMetadata) -> None:
        if self._started:  # a layout change does not change the video's timing
            return
        self._started = True
        source = metadata.source
        if not source.live and source.fps is not None and Path(source.uri).is_file():
            with av.open(source.uri) as container:
                stream = container.streams.video[0]
                self._time_base = stream.time_base or LIVE_TIME_BASE
                self._rate = stream.average_rate
            self._relative = False
        elif source.fps is None and not source.live:
            self._time_base, self._rate = 1 / STILLS_RATE, STILLS_RATE
        else:
            self._rate = Fraction(source.fps).limit_denominator(1001) if source.fps else None

    def write(self, result: FrameResult) -> None:
        frame = self._tap.frame(result.frame_index)
        if frame is None:
            raise SinkError(f"frame {result.frame_index} is no longer held by the FrameTap: pass the run the "
                            "same FrameTap the RenderSink was given")
        if self._writer is None:
            height, width = frame.image.shape[:2]
            self._writer = OverlayWriter(self.path, width, height, self._time_base, self._rate)
        self._writer.write(draw_overlay(frame.image, result, self._style), self._pts(frame))

    def _pts(self, frame: Frame) -> int:
        if frame.pts is None:
            return round(frame.index / (self._rate or 25) / self._time_base)
        if self._origin is None:
            self._origin = frame.pts if self._relative else 0.0
        return round((frame.pts - self._origin) / self._time_base)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def discard(self) -> None:
        """A run that ended before its first frame: the `.partial` goes, an earlier video stays as it was."""
        if self._writer is not None:
            self._writer.abort(remove=True)
            self._writer = None
