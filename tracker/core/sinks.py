"""The interface every result consumer implements; the pipeline knows nothing else of them."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from facetrack.tracker.core.schema import FrameResult, StreamMetadata

log = logging.getLogger("facetrack.sinks")

PARTIAL_SUFFIX = ".partial"
"""A file sink writes `<name><PARTIAL_SUFFIX>` and renames it to `<name>` when it closes."""


@runtime_checkable
class Sink(Protocol):
    """Receives a stream's metadata, then every result in order, then `close()` exactly once."""

    def start(self, metadata: StreamMetadata) -> None:
        """Called once before the first result, and again whenever the layout changes."""

    def write(self, result: FrameResult) -> None:
        """Consume one frame's result; must not block for long (a slow sink slows tracking)."""

    def close(self) -> None:
        """Flush and release everything; safe to call after an error."""


@runtime_checkable
class DiscardableSink(Sink, Protocol):
    """A sink that writes files: it can end without giving anything its final name."""

    def discard(self) -> None:
        """Release everything and remove what this sink began (`.partial` files); any earlier file under
        the final name stays as it was. Called instead of `close()` when a run ends before its first frame."""


def end_sinks(sinks: Iterable[Sink], keep: bool) -> None:
    """Close every sink (`keep`), or discard what the file sinks began; one failing sink does not stop the rest."""
    for sink in sinks:
        try:
            if not keep and isinstance(sink, DiscardableSink):
                sink.discard()
            else:
                sink.close()
        except Exception:
            log.exception("closing %s failed", type(sink).__name__)


SinkOpener = Callable[[str | os.PathLike[str]], Sink]
"""Opens a results file sink for a path, its format from the extension (adapters/file_sinks.open_file_sink;
batch/ gets it from the CLI, so tracker/ needs no adapters)."""
