"""Shared fixtures: where the real media lives, and small clips the tests encode themselves."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("FACETRACK_MEDIA", ROOT.parent / "shared" / "media"))
ASSETS = Path(os.environ.get("FACETRACK_ASSETS", ROOT.parent / "shared" / "assets"))


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real media not found at {path} (set FACETRACK_MEDIA / FACETRACK_ASSETS)")
    return path


@pytest.fixture(scope="session")
def media_dir() -> Path:
    return _require(MEDIA)


@pytest.fixture(scope="session")
def assets_dir() -> Path:
    return _require(ASSETS)


@pytest.fixture(scope="session")
def face_clip(media_dir: Path) -> Path:
    """A 512x512, 25 fps, 8 s frontal talking head with blinks (200 frames)."""
    return _require(media_dir / "videos" / "SadTalker_ref" / "WDA_KatieHill_000.mp4")


def encode_clip(path: Path, frames: list[np.ndarray], fps: int = 25, codec: str = "libx264",
                clockwise: int = 0) -> Path:
    """Encode RGB frames to a video file with PyAV (the tests' own clips); `clockwise` adds a display
    matrix that turns the pictures that many degrees for display, as a phone's portrait clip has."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        if clockwise:
            stream.set_display_rotation(-clockwise)  # PyAV's angle is counter-clockwise
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture()
def blank_clip(tmp_path: Path) -> Path:
    """30 frames of a gradient with no face, 160x120, 25 fps."""
    ramp = np.linspace(0, 255, 160, dtype=np.uint8)
    frames = [np.dstack([np.tile(ramp, (120, 1))] * 3).copy() for _ in range(30)]
    for i, f in enumerate(frames):
        f[:, :, 1] = (i * 8) % 256
    return encode_clip(tmp_path / "blank.mp4", frames)


@pytest.fixture(scope="session")
def short_face_clip(face_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 40 frames of the real face clip, re-encoded (fast end-to-end tests)."""
    frames = []
    with av.open(str(face_clip)) as c:
        for frame in c.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == 40:
                break
    return encode_clip(tmp_path_factory.mktemp("clips") / "face40.mp4", frames)
