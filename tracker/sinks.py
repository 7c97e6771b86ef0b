"""The interface every result consumer implements; the pipeline knows nothing else of them."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from facetrack.tracker.schema import FrameResult, StreamMetadata


@runtime_checkable
class Sink(Protocol):
    """Receives a stream's metadata, then every result in order, then `close()` exactly once."""

    def start(self, metadata: StreamMetadata) -> None:
        """Called once before the first result, and again whenever the layout changes."""

    def write(self, result: FrameResult) -> None:
        """Consume one frame's result; must not block for long (a slow sink slows tracking)."""

    def close(self) -> None:
        """Flush and release everything; safe to call after an error."""
