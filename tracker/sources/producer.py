"""The decode thread and its bounded queue: back-pressure for files, drop-oldest for live sources,
replay for loops and reconnection for dropped streams.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from facetrack.tracker.core.errors import SourceDecodeError, SourceLostError, SourceOpenError
from facetrack.tracker.sources.config import (
    MAX_PACING_LAG,
    MIN_PTS_STEP,
    OPEN_TIMEOUT,
    RETRY_INTERVAL,
    Frame,
)
from facetrack.tracker.sources.video import Reader

logger = logging.getLogger("facetrack.sources")


class FrameQueue:
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


class Producer:
    """The decode thread: pulls frames from readers, numbers and paces them, feeds the queue.

    It also owns the policies that span reader passes: looping a file, and reconnecting
    a live source that dropped.
    """

    def __init__(
        self,
        reader: Reader,
        reopen: Callable[[float], Reader],
        queue: FrameQueue,
        *,
        uri: str,
        source: str | None = None,
        loop: bool,
        pace: bool,
        reconnect_seconds: float | None,
    ) -> None:
        self._reader = reader
        self._reopen = reopen
        self._queue = queue
        self._uri = uri
        self._source = source
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
                for image, pts, name in self._reader.frames():
                    if not self._emit(image, pts, name):
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

    def _emit(self, image: np.ndarray | None, pts: float | None, name: str | None = None) -> bool:
        if image is None:  # a still image that could not be decoded: skipped, its index stays unused
            self._next_index += 1
            return True
        if pts is not None:
            if self._rebase and self._last_pts is not None:
                step = self._reader.frame_duration or MIN_PTS_STEP
                self._pts_offset = self._last_pts + step - pts
                self._rebase = False
            pts += self._pts_offset
            if self._pace and not self._wait_until(pts):
                return False
            self._last_pts = pts
        frame = Frame(index=self._next_index, pts=pts, capture_time=time.time(), image=image, dropped=0,
                      source=name or self._source)
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
