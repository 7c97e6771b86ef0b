"""`facetrack doctor`: the report, a fix for each problem, and exit code 0 only when the basics work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from facetrack.tracker.cli import doctor
from facetrack.tracker.cli.viz import doctor_command


@pytest.fixture(scope="module")
def report() -> dict:
    """One full run of `facetrack doctor --json` with a camera that does not exist."""
    done = CliRunner().invoke(doctor_command, ["--json", "--camera", "/dev/video-none"])
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


def test_basics_work_here_and_the_report_says_what_is_installed(report: dict) -> None:
    assert report["ok"] is True
    checks = {(c["area"], c["name"]): c for c in report["checks"]}
    for package in ("facetrack", "mediapipe", "av", "numpy", "onnxruntime", "pyzmq"):
        assert checks[("packages", package)]["status"] == "ok"
        assert checks[("packages", package)]["detail"][0].isdigit()  # a version
    assert checks[("engines", "landmarks")]["status"] == "ok"
    assert checks[("engines", "eye state")]["status"] == "ok"
    assert "eye_state.onnx" in checks[("engines", "eye state")]["detail"]
    assert "ict478" in checks[("models", "face models")]["detail"]  # the packaged default (`builtin`)
    assert checks[("video", "decode")]["status"] == "ok"
    assert all(c["status"] != "fail" for c in report["checks"])
    assert all(c["fix"] for c in report["checks"] if c["status"] != "ok")  # every problem comes with a fix


def test_a_camera_that_does_not_open_is_a_warning_with_a_fix(report: dict) -> None:
    camera = next(c for c in report["checks"] if c["area"] == "camera")
    assert camera["name"] == "/dev/video-none" and camera["status"] == "warn"
    assert "/dev/video-none" in camera["detail"] and "webcam:1" in camera["fix"]


def test_a_missing_eye_engine_fails_the_basics(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import facetrack.engines.eye_state as eye_state

    monkeypatch.setattr(eye_state, "DEFAULT_ENGINE", tmp_path / "eye_state.onnx")
    check = doctor.check_eye_engine()
    assert check.status == "fail" and "missing" in check.detail and "--no-eyes" in check.fix
    assert doctor.exit_code([check]) == 1
    done = CliRunner().invoke(doctor_command, ["--no-camera"])
    assert done.exit_code == 1
    assert "FAIL  eye state" in done.output and "fix:" in done.output and "Not working: eye state" in done.output
    assert "webcam:0" not in done.output  # --no-camera skips the camera


def test_missing_packages_fail_and_extras_only_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "CORE_PACKAGES", (("numpy", "numpy"), ("no-such-dist", "no_such_module")))
    monkeypatch.setattr(doctor, "OPTIONAL_PACKAGES", (("also-missing", "pip install it"),))
    checks = {c.name: c for c in doctor.check_packages()}
    assert checks["numpy"].status == "ok"
    assert checks["no-such-dist"].status == "fail" and "pip install" in checks["no-such-dist"].fix
    assert checks["also-missing"].status == "warn" and checks["also-missing"].fix == "pip install it"
