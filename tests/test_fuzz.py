"""Malformed input never crashes or hangs a parser: a short run of scripts/fuzz.py, plus regressions it found."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from facetrack.tracker.facemodel.format import ModelError, MorphableModel

ROOT = Path(__file__).resolve().parents[1]


def test_short_fuzz_run_has_no_crash_or_hang(tmp_path: Path) -> None:
    summary_file = tmp_path / "fuzz.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "fuzz.py"), "--cases", "300", "--seed", "7",
                           "--json", str(summary_file)], capture_output=True, text=True, timeout=600)
    summary = json.loads(summary_file.read_text())
    assert done.returncode == 0, summary["failures"]
    assert summary["cases"] >= 300
    for target in ("video", "message", "model", "results"):
        outcomes = summary["targets"][target]
        assert outcomes.get("crash", 0) == 0 and outcomes.get("hang", 0) == 0, target
        assert outcomes.get("refused", 0) > 0, f"{target}: no malformed case was refused"


@pytest.mark.parametrize("payload", [b"", b"not a zip at all", b"PK\x03\x04" + b"\x00" * 40])
def test_corrupt_model_file_is_a_model_error(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "broken.npz"
    path.write_bytes(payload)
    with pytest.raises(ModelError, match="broken.npz"):
        MorphableModel.load(path)


def test_video_whose_track_has_no_decodable_codec_is_refused_at_open(tmp_path: Path) -> None:
    # Found by the fuzzer: a corrupt 'hdlr' box size leaves the video track without a codec.
    import numpy as np
    from conftest import encode_clip

    from facetrack.tracker.core.errors import SourceOpenError
    from facetrack.tracker.sources.frame_source import open_source

    rng = np.random.default_rng(0)
    clip = encode_clip(tmp_path / "clip.mp4", [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(5)])
    data = bytearray(clip.read_bytes())
    handler = data.index(b"hdlr")
    data[handler - 3] = 0x80  # the box's 32-bit size now claims 8 MB
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    with pytest.raises(SourceOpenError, match="no codec"):
        open_source(broken)
