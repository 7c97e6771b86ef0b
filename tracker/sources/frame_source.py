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

import logging
import os
import weakref
from collections.abc import Iterator
from types import TracebackType

from facetrack.tracker.core.schema import SourceInfo
from facetrack.tracker.sources.config import JOIN_TIMEOUT, LIVE_KINDS, OPEN_TIMEOUT, Frame, SourceConfig
from facetrack.tracker.sources.images import ImageReader
from facetrack.tracker.sources.producer import FrameQueue, Producer
from facetrack.tracker.sources.resolve import Target, is_live, resolve_spec, source_name
from facetrack.tracker.sources.video import Reader, VideoReader

logger = logging.getLogger("facetrack.sources")


def _open_reader(target: Target, live: bool, timeout: float = OPEN_TIMEOUT, rotate: int | None = None,
                 sequence_fps: float | None = None) -> Reader:
    if target.kind == "images":
        return ImageReader(target, live, rotate, sequence_fps)
    return VideoReader(target, live, timeout, rotate)


class FrameSource:
    """Frames of one source, decoded ahead on a daemon thread; iterate, then close (or use `with`).

    Build it with `open_source`. Iterating yields `Frame`s until the source ends, then raises
    the source's error (SourceDecodeError, SourceLostError), if any.
    """

    stills: bool = False
    """Every frame is a photo of its own (images without `SourceConfig.sequence`): nothing carries over."""

    def __init__(self, target: Target, reader: Reader, config: SourceConfig, live: bool) -> None:
        self.info: SourceInfo = reader.info
        self.live: bool = live
        self.stills = target.kind == "images" and not config.sequence and not live
        self._queue = FrameQueue(config.queue_size, drop_oldest=live)
        self._producer = Producer(
            reader,
            lambda timeout: _open_reader(target, live, timeout, config.rotate, _sequence_fps(target, config)),
            self._queue,
            uri=target.uri,
            source=None if target.kind == "images" else source_name(target),
            loop=config.loop,
            pace=config.realtime and target.kind == "file",
            # live=False on a URL reads it like a file: its end is the end, not a drop.
            reconnect_seconds=config.reconnect_seconds if live and target.kind in LIVE_KINDS else None,
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


def _sequence_fps(target: Target, config: SourceConfig) -> float | None:
    """An image sequence's nominal frame rate (stills have none)."""
    return config.sequence_fps if target.kind == "images" and config.sequence else None


def open_source(spec: str | os.PathLike[str], config: SourceConfig | None = None) -> FrameSource:
    """Open a file, camera (`webcam:0`, `/dev/video0`), stream URL, image, folder or glob.

    Raises SourceOpenError here, synchronously, if it cannot be opened.
    """
    config = config or SourceConfig()
    target = resolve_spec(spec, config)
    live = is_live(target, config)
    reader = _open_reader(target, live, rotate=config.rotate, sequence_fps=_sequence_fps(target, config))
    info = reader.info
    logger.info("opened %s: %s, %dx%d, live=%s", target.uri, target.kind, info.width, info.height, live)
    return FrameSource(target, reader, config, live)


def probe_source(spec: str | os.PathLike[str], config: SourceConfig | None = None) -> SourceInfo:
    """Container metadata without decoding (for `facetrack info`); raises SourceOpenError."""
    config = config or SourceConfig()
    target = resolve_spec(spec, config)
    reader = _open_reader(target, is_live(target, config), rotate=config.rotate)
    reader.close()
    return reader.info
