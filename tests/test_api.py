"""The public Python API: names resolve, and light imports stay light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import facetrack.tracker as api


def test_public_names_resolve() -> None:
    for name in api.__all__:
        assert getattr(api, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        api.Nope  # noqa: B018


def test_importing_the_schema_does_not_start_mediapipe() -> None:
    code = "import sys; from facetrack.tracker import FrameResult; print('mediapipe' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
