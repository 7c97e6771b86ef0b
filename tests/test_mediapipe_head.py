"""MediaPipe's blendshape network in numpy, and the fit that takes some of its weights (issue 23)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facetrack.adapters.file_sinks import read_results
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel.compact import load_default_model
from facetrack.tracker.facemodel.expression_head import arkit_mirror
from facetrack.tracker.facemodel.fitter import FaceModelFitter, FitterConfig
from facetrack.tracker.facemodel.format import ModelError
from facetrack.tracker.facemodel.mediapipe_head import load_mediapipe_head, packaged_mediapipe_head
from facetrack.tracker.facemodel.rest_face import load_neutral, save_neutral
from facetrack.tracker.pipeline import Tracker

HEAD = packaged_mediapipe_head()
MODEL = load_default_model()
IDX = {n: i for i, n in enumerate(ARKIT_BLENDSHAPES)}
W, H, F = 640, 480, 640.0


def face_points(seed: int = 0) -> np.ndarray:
    """The default model's mean face with a random expression, as 146 image points of the network's subset."""
    rng = np.random.default_rng(seed)
    e = np.clip(rng.normal(0, 0.3, MODEL.n_expression), 0, 1)
    v = MODEL.shape(np.zeros(MODEL.n_identity), e)[:478].astype(np.float64)
    cam = (v - v.mean(0)) + [0.0, 0.0, -55.0]
    px = np.stack([W / 2 + F * cam[:, 0] / -cam[:, 2], H / 2 - F * cam[:, 1] / -cam[:, 2]], axis=1)
    return px[HEAD.landmarks]


def test_the_packaged_network_is_plain_arrays_with_its_provenance():
    assert HEAD is not None, "tracker/facemodel/data/mediapipe_blendshapes.npz is missing"
    with np.load(Path(__file__).resolve().parents[1] / "tracker/facemodel/data/mediapipe_blendshapes.npz",
                 allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    assert len(HEAD.landmarks) == 146 and HEAD.meta["outputs"][0] == "_neutral"
    assert len(HEAD.meta["source_sha256"]) == 64 and HEAD.meta["max_abs_difference_vs_litert"] < 1e-4


def test_a_malformed_file_is_refused_with_what_to_do(tmp_path):
    bad = tmp_path / "net.npz"
    np.savez(bad, metadata=np.array('{"format": "something else"}'))
    with pytest.raises(ModelError, match="expected facetrack.mediapipe_blendshapes/1"):
        load_mediapipe_head(bad)
    with pytest.raises(ModelError, match="convert_mediapipe_blendshapes"):
        load_mediapipe_head(tmp_path / "absent.npz")


def test_the_reading_ignores_where_the_face_is_and_how_big():
    p = face_points()
    moved = p * 1.7 + [123.0, -45.0]
    assert np.abs(HEAD(p) - HEAD(moved)).max() < 1e-4
    out = HEAD(np.stack([p, moved]))
    assert out.shape == (2, 52) and (out >= 0).all() and (out <= 1).all()
    assert out[:, IDX["tongueOut"]].max() == 0.0  # the network has no tongue


def test_a_face_and_its_mirror_image_get_mirrored_weights():
    for seed in range(3):
        p = face_points(seed)
        mirrored = p[HEAD._mirror_rows] * [-1, 1]
        assert np.abs(HEAD(p)[arkit_mirror()] - HEAD(mirrored)).max() < 1e-5
    # one reading alone is not symmetric: the average is what makes it so
    raw = HEAD.raw(np.stack([p, mirrored]).astype(np.float32))
    assert np.abs(raw[0][arkit_mirror()] - raw[1]).max() > 1e-3


def test_the_fit_takes_the_networks_weights_below_the_brows_less_its_rest(tmp_path):
    rng = np.random.default_rng(1)
    ident = rng.normal(0, 1, MODEL.n_identity)
    cfg = FitterConfig(rest_window=20, rest_early=0)
    fitters = {m: FaceModelFitter(MODEL, cfg.model_copy(update={"mediapipe_weights": m}))
               for m in ("off", "below_brows", "face")}

    def frame(e: np.ndarray | None) -> np.ndarray:
        v = MODEL.shape(ident, e).astype(np.float64)[:478]
        cam = (v - v.mean(0)) + [0.0, 0.0, -55.0]
        px = np.stack([W / 2 + F * cam[:, 0] / -cam[:, 2], H / 2 - F * cam[:, 1] / -cam[:, 2]], axis=1)
        px[~MODEL.lmk_valid] = np.nan
        for iris, corners in ((slice(468, 473), [33, 133]), (slice(473, 478), [263, 362])):
            px[iris] = px[corners].mean(0)  # the model has no irises: centred in the eye, looking ahead
        return px

    for _ in range(25):  # a calm warm-up: the rest face, and the network's reading of it
        out = {m: f.fit(1, frame(None), (W, H), F).blendshapes for m, f in fitters.items()}
    smile = np.zeros(MODEL.n_expression)
    smile[[MODEL.exp_names.index(n) for n in MODEL.exp_names if n.startswith("mouthSmile")]] = 0.9
    out = {m: f.fit(1, frame(smile), (W, H), F).blendshapes for m, f in fitters.items()}
    brows = np.array([n.startswith("brow") for n in ARKIT_BLENDSHAPES])
    mouth = np.array([n.startswith("mouth") for n in ARKIT_BLENDSHAPES])
    assert np.allclose(out["below_brows"][brows], out["off"][brows])
    assert not np.allclose(out["below_brows"][mouth], out["off"][mouth])
    assert np.allclose(out["face"][mouth], out["below_brows"][mouth])
    assert min(out["face"][IDX["mouthSmileLeft"]], out["face"][IDX["mouthSmileRight"]]) > 0.35
    # the rest's weights are saved with the neutral and come back with it
    fitter = fitters["face"]
    saved = fitter.neutral_of(1)
    assert saved is not None and saved[3] is not None and saved[3].shape == (52,)
    path = save_neutral(tmp_path / "actor.npz", MODEL.id, *saved)
    again = FaceModelFitter(MODEL, cfg.model_copy(update={"mediapipe_weights": "face"}))
    loaded = load_neutral(path, MODEL.id)
    assert np.allclose(loaded[3], saved[3], atol=1e-6)
    again.use_neutral(*loaded)
    assert np.allclose(again.fit(5, frame(smile), (W, H), F).blendshapes[mouth], out["face"][mouth], atol=0.02)
    # a frame without every point the network reads is the head's
    missing = frame(smile)
    missing[470] = np.nan
    assert np.allclose(again.fit(5, missing, (W, H), F).blendshapes[mouth],
                       fitters["off"].fit(1, missing, (W, H), F).blendshapes[mouth], atol=0.05)
    # a neutral saved without them cannot stand in for them
    with pytest.raises(ModelError, match="recalibrate"):
        again.use_neutral(*loaded[:3])


def test_settings_that_would_be_ignored_are_refused():
    with pytest.raises(ValueError, match="regress engine"):
        TrackerConfig(mediapipe_weights="face", coefficients="regress")
    with pytest.raises(ValueError, match="generated rig"):
        TrackerConfig(mediapipe_weights="face", model="rig")


@pytest.mark.media
def test_a_clenched_grin_reads_as_a_smile_not_an_open_jaw(media_dir):
    """The issue's d0 frame 39: teeth together, lips apart, corners up and back (labelled jaw 0, smiles 2)."""
    clip = media_dir / "videos" / "LivePortrait_driving" / "d0.mp4"
    with Tracker(TrackerConfig(mediapipe_weights="face", max_frames=40)) as tracker:
        results = list(tracker.track(clip))
    w = results[39].faces[0].blendshapes
    assert min(w[IDX["mouthSmileLeft"]], w[IDX["mouthSmileRight"]]) > 0.5
    assert w[IDX["jawOpen"]] < 0.2
    assert max(w[IDX["mouthStretchLeft"]], w[IDX["mouthStretchRight"]]) < 0.3
    assert max(w[IDX["browDownLeft"]], w[IDX["browDownRight"]]) < 0.3


@pytest.mark.media
def test_the_command_saves_and_reuses_the_networks_rest_and_refuses_a_neutral_without_it(short_face_clip, tmp_path):
    def facetrack(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "facetrack.tracker.cli", "run", str(short_face_clip), "--quiet",
                               *args], capture_output=True, text=True, timeout=180)

    done = facetrack("--mediapipe-weights", "below-brows", "--save-neutral", str(tmp_path / "with.npz"),
                     "--out", str(tmp_path / "a.jsonl"))
    assert done.returncode == 0, done.stderr
    assert len([r for r in read_results(tmp_path / "a.jsonl") if r.faces]) == 40
    layout = json.loads((tmp_path / "a.jsonl").read_text().splitlines()[0])
    assert layout["calibration"]["mediapipe_weights"] == "below_brows"
    assert load_neutral(tmp_path / "with.npz", MODEL.id)[3] is not None
    done = facetrack("--mediapipe-weights", "below-brows", "--neutral", str(tmp_path / "with.npz"),
                     "--out", str(tmp_path / "b.jsonl"))
    assert done.returncode == 0, done.stderr
    done = facetrack("--save-neutral", str(tmp_path / "without.npz"), "--out", str(tmp_path / "c.jsonl"))
    assert done.returncode == 0 and load_neutral(tmp_path / "without.npz", MODEL.id)[3] is None
    done = facetrack("--mediapipe-weights", "face", "--neutral", str(tmp_path / "without.npz"),
                     "--out", str(tmp_path / "d.jsonl"))
    assert done.returncode != 0 and "recalibrate" in done.stderr and not (tmp_path / "d.jsonl").exists()
    done = facetrack("--mediapipe-weights", "face", "--engine", "regress", "--out", str(tmp_path / "e.jsonl"))
    assert done.returncode != 0 and "regress engine" in done.stderr and not (tmp_path / "e.jsonl").exists()


def test_the_converter_refuses_a_network_that_is_not_the_blendshape_one():
    """scripts/convert_mediapipe_blendshapes.py on another MediaPipe model (the wheel's face mesh)."""
    pytest.importorskip("tflite", reason="the converter reads flatbuffers with the `tflite` package: "
                                         "pip install 'facetrack[convert]'")
    import importlib.util

    from facetrack.engines.litert import mediapipe_model

    script = Path(__file__).resolve().parents[1] / "scripts" / "convert_mediapipe_blendshapes.py"
    spec = importlib.util.spec_from_file_location("convert_mediapipe_blendshapes", script)
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    mesh = converter.read_tflite(mediapipe_model("face_landmark"))
    with pytest.raises(SystemExit, match="not MediaPipe's blendshape network"):
        converter.weights(mesh)
