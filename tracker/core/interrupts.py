"""Ctrl-C and SIGTERM as one KeyboardInterrupt, held back while native libraries initialise.

A signal's Python handler runs between two bytecodes of the main thread, which may be inside an import
that a native extension started (mediapipe's bindings importing protobuf): the KeyboardInterrupt is then
printed by the extension as a traceback, turned into an ImportError or lost. Code that loads such a
library runs inside `deferred()`; a signal that arrives there is remembered and raised when the block
ends, at a point where Python code is in charge. `install()` is the command line's; a library user
keeps Python's own handlers.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_requested = threading.Event()
_deferring = 0


def _on_signal(signum: int, _frame: object) -> None:
    _requested.set()
    if not _deferring:
        raise KeyboardInterrupt(f"signal {signum}")


def install() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt (outside `deferred()` blocks) and are remembered."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)


def requested() -> bool:
    """Whether Ctrl-C or SIGTERM has arrived since `install()`."""
    return _requested.is_set()


def raise_if_requested() -> None:
    """Stop now if a signal arrived and its KeyboardInterrupt was lost on the way."""
    if _requested.is_set():
        raise KeyboardInterrupt("a signal arrived earlier")


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Native set-up that must not be interrupted half-way; a signal during it is raised when it ends."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring:
        raise_if_requested()
