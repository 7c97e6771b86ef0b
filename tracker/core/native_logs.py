"""Native libraries' own log lines (mediapipe's absl/glog, TF Lite, ONNX Runtime) kept off stderr by default.

They write straight to file descriptor 2 from C++ ("INFO: Created TensorFlow Lite XNNPACK delegate",
absl's "W0000 ... inference_feedback_manager.cc"), so an error of ours could follow or interleave with
them. The environment variables only work if they are set before a library loads, and absl and TF Lite's
minimal logger read none: the set-up that prints is run with descriptor 2 pointed at /dev/null.
`show(True)` (the CLI's -v) lets them all through.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

_LEVELS = {"GLOG_minloglevel": ("2", "0"), "TF_CPP_MIN_LOG_LEVEL": ("2", "0")}
"""variable -> (quiet value, shown value); a value the user set is kept."""
_shown = False


def show(verbose: bool) -> None:
    """Let native log lines through (True) or keep them quiet; call before a native library loads."""
    global _shown
    _shown = verbose
    for name, (quiet, loud) in _LEVELS.items():
        os.environ.setdefault(name, loud if verbose else quiet)


def shown() -> bool:
    """Whether native log lines are let through (-v)."""
    return _shown


class StderrSilencer:
    """Points file descriptor 2 at /dev/null between start() and stop(); nothing when native logs are shown."""

    def __init__(self) -> None:
        self._saved: int | None = None

    def start(self) -> None:
        if self._saved is None and not _shown:
            sys.stderr.flush()
            self._saved = os.dup(2)
            with open(os.devnull, "wb") as devnull:
                os.dup2(devnull.fileno(), 2)

    def stop(self) -> None:
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._saved = None


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Native set-up chatter (a TF Lite interpreter and its delegate) hidden while the block runs."""
    silencer = StderrSilencer()
    silencer.start()
    try:
        yield
    finally:
        silencer.stop()
