"""The shipped landmark regress engine: installed with the package, checked like every engine, run by
`--engine regress` with no user file, and close to the fit it was trained on. Real ONNX Runtime, real clips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from facetrack.engines.onnx_runtime import EngineError, sidecar_path
from facetrack.engines.regress_landmarks import SHIPPED_ENGINE, LandmarkRegressEngine, regress_engine_path
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.pipeline import Tracker
from facetrack.tracker.stages.regress import RegressStage
from facetrack.tracker.stages.regress_features import (
    CONTEXT_WINDOW,
    N_FEATURES,
    TrackContext,
    engine_input,
    landmark_features,
)

N_INPUT = 2 * N_FEATURES  # a face's features, then its track's context


def test_the_shipped_engine_is_small_checked_and_has_its_model_card() -> None:
    meta = json.loads(sidecar_path(SHIPPED_ENGINE).read_text())
    assert meta["engine"] == "regress" and meta["input"] == "landmarks" and meta["features"] == N_INPUT
    assert meta["context_window"] == CONTEXT_WINDOW
    size = SHIPPED_ENGINE.stat().st_size
    assert size < 5_000_000 and meta["bytes"] == size  # "a few MB" (issue 21)
    card = SHIPPED_ENGINE.with_suffix(".md").read_text()
    assert "## Held-out identities" in card and "python scripts/train_landmark_regressor.py" in card
    engine = LandmarkRegressEngine(SHIPPED_ENGINE, backend="cpu")
    out = engine.predict(np.zeros((3, N_INPUT), np.float32))
    assert out["expression"].shape == (3, 52) and out["rotation"].shape == (3, 3)
    assert engine.predict(np.zeros((0, N_INPUT), np.float32))["expression"].shape == (0, 52)
    with pytest.raises(ValueError, match=f"features must be \\(N, {N_INPUT}\\)"):
        engine.predict(np.zeros((2, 10), np.float32))


def test_with_nothing_installed_the_stage_runs_the_shipped_engine(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACETRACK_DATA", str(tmp_path))
    assert regress_engine_path() == SHIPPED_ENGINE
    stage = RegressStage(backend="cpu")
    assert stage.landmark_engine is not None and stage.identity_size == 0


def test_an_altered_or_mislabelled_engine_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "regress.onnx"
    shutil.copy(SHIPPED_ENGINE, copy)
    meta = json.loads(sidecar_path(SHIPPED_ENGINE).read_text())
    sidecar_path(copy).write_text(json.dumps({**meta, "outputs": {"expression": 51, "rotation": 3}}))
    with pytest.raises(EngineError, match="the regress stage needs"):
        LandmarkRegressEngine(copy, backend="cpu")
    sidecar_path(copy).write_text(json.dumps({**meta, "sha256": "0" * 64}))
    with pytest.raises(EngineError, match="sha256"):
        LandmarkRegressEngine(copy, backend="cpu")


def test_the_shipped_engine_answers_a_mirror_image_with_the_mirrored_answer() -> None:
    """The engine averages its networks over the face and its mirror image in its graph, so swapping the landmarks
    with their partners (x negated) swaps Left and Right in the weights and mirrors the rotation remainder."""
    from facetrack.tracker.facemodel.expression_head import arkit_mirror
    from facetrack.training.landmark_regressor import mirror_tables

    index, sign = mirror_tables()
    np.testing.assert_array_equal(index[index], np.arange(N_FEATURES))  # mirroring twice is the identity
    rng = np.random.default_rng(3)
    points = rng.normal(0, 25, (4, 478, 3)) + [320, 240, 0]
    features, _ = landmark_features(points, (640, 480), 640.0)
    context, _ = landmark_features(points + rng.normal(0, 2, points.shape), (640, 480), 640.0)
    engine = LandmarkRegressEngine(SHIPPED_ENGINE, backend="cpu")
    out = engine.predict(engine_input(features, context))
    mirrored = engine.predict(engine_input(features[:, index] * sign, context[:, index] * sign))
    np.testing.assert_allclose(mirrored["expression"], out["expression"][:, arkit_mirror()], atol=1e-5)
    np.testing.assert_allclose(mirrored["rotation"], out["rotation"] * [1, -1, -1], atol=1e-5)


def test_jawopen_has_a_linear_path_that_training_uses_and_no_other_weight_sees() -> None:
    """Beside the MLP, a line from the projections to jawOpen (a jaw opens nearly linearly in the landmarks, and a
    line carries on past the widest jaws in training): trained with the rest, felt by jawOpen alone."""
    torch = pytest.importorskip("torch", reason="the network is built with PyTorch: pip install 'facetrack[train]'")
    from facetrack.training.landmark_regressor import FaceSet, build_network, train_network

    rng = np.random.default_rng(5)
    n = 64
    features = rng.normal(0, 1, (n, N_FEATURES)).astype(np.float32)
    expression = np.zeros((n, len(ARKIT_BLENDSHAPES)), np.float32)
    expression[:, ARKIT_BLENDSHAPES.index("jawOpen")] = rng.uniform(0, 1, n)
    faces = FaceSet(features, features + rng.normal(0, 0.1, features.shape).astype(np.float32),
                    np.tile(np.eye(3), (n, 1, 1)), expression, np.tile(np.eye(3), (n, 1, 1)),
                    rng.normal(0, 0.02, (n, 3)).astype(np.float32), np.array(["a"] * n), np.array(["clip-a"] * n))
    net = build_network(faces, components=8, hidden=16)
    assert not net.jaw.weight.any()  # starts as the MLP alone
    inputs = torch.from_numpy(faces.inputs())
    with torch.no_grad():
        before, _ = net(inputs)
        net.jaw.weight.fill_(0.1)
        after, _ = net(inputs)
    moved = np.flatnonzero((after - before).abs().amax(0).numpy() > 0).tolist()
    assert moved == [ARKIT_BLENDSHAPES.index("jawOpen")]
    trained = train_network(faces, epochs=2, batch=32, components=8, hidden=16, log=lambda *_: None)
    assert trained.jaw.weight.abs().sum() > 0  # the optimiser trains the line too


def test_the_jaws_calibration_undoes_a_narrow_reading_and_touches_jawopen_alone() -> None:
    """Out-of-fold jawOpen read at half the fit's and 0.02 high comes back as x2, -0.04; in the engine's graph the
    scale and offset move jawOpen only (jawOpen is its own mirror image, so the mirror averaging is unchanged)."""
    torch = pytest.importorskip("torch", reason="the network is built with PyTorch: pip install 'facetrack[train]'")
    from facetrack.training.landmark_regressor import FaceSet, build_network, jaw_calibration, mirror_ensemble

    rng = np.random.default_rng(7)
    fit = rng.uniform(0, 1, 2000) ** 2
    assert jaw_calibration(0.5 * fit + 0.02, fit) == (2.0, -0.04)
    assert jaw_calibration(fit, fit) == (1.0, 0.0)
    n = 16
    features = rng.normal(0, 1, (n, N_FEATURES)).astype(np.float32)
    faces = FaceSet(features, features, np.tile(np.eye(3), (n, 1, 1)),
                    np.zeros((n, len(ARKIT_BLENDSHAPES)), np.float32), np.tile(np.eye(3), (n, 1, 1)),
                    rng.normal(0, 0.02, (n, 3)).astype(np.float32), np.array(["a"] * n), np.array(["clip-a"] * n))
    net = build_network(faces, components=8, hidden=16).eval()
    inputs = torch.from_numpy(faces.inputs())
    with torch.no_grad():
        plain, rotation = mirror_ensemble([net])(inputs)
        calibrated, rotation2 = mirror_ensemble([net], (2.0, 0.1))(inputs)
    jaw = ARKIT_BLENDSHAPES.index("jawOpen")
    others = np.arange(len(ARKIT_BLENDSHAPES)) != jaw
    np.testing.assert_array_equal(calibrated[:, others].numpy(), plain[:, others].numpy())
    np.testing.assert_allclose(calibrated[:, jaw].numpy(), 2.0 * plain[:, jaw].numpy() + 0.1, atol=1e-6)
    np.testing.assert_array_equal(rotation2.numpy(), rotation.numpy())


def test_features_do_not_see_where_the_face_is_how_big_or_how_it_is_turned() -> None:
    rng = np.random.default_rng(1)
    face = rng.normal(0, 30, (478, 3)) + [320, 240, 0]
    turn = Rotation.from_euler("z", 25, degrees=True).as_matrix()
    moved = (face - face.mean(0)) @ turn.T * 1.7 + [300, 260, 0]
    both, r0 = landmark_features(np.stack([face, moved]), (640, 480), 640.0)
    assert both.shape == (2, N_FEATURES) and r0.shape == (2, 3, 3)
    np.testing.assert_allclose(both[0, :-3], both[1, :-3], atol=1e-4)
    assert abs(both[1, -1] / both[0, -1] - 1.7) < 1e-3  # the size comes back as its own feature
    with pytest.raises(ValueError, match="landmarks must be"):
        landmark_features(np.zeros((2, 468, 3)), (640, 480), 640.0)


def test_a_tracks_context_is_the_median_of_its_first_frames_then_held() -> None:
    """Medians are taken at 1, 2, 4, 8, ... frames and at the window's end; each track has its own; a forgotten
    track starts afresh; a track of one frame (a photo) is its own context."""
    rows = np.arange(12, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    context = TrackContext(window=6)
    seen = [context.update([7, 8], np.stack([r, -r])) for r in rows]
    assert [float(s[0, 0]) for s in seen] == [0.0, 0.5, 0.5, 1.5, 1.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5]
    assert all(float(s[1, 0]) == -float(s[0, 0]) for s in seen)
    context.forget([7])
    np.testing.assert_array_equal(context.update([7], rows[9:10]), rows[9:10])
    with pytest.raises(ValueError, match="at least one frame"):
        TrackContext(window=0)


def test_the_stage_gives_a_clips_frames_the_inputs_training_gave_them() -> None:
    """Training's `assemble` and the run time's stage must feed the engine the same numbers: a clip (and its
    mirrored copy) is one track in frame order, a photo is its own context."""
    pytest.importorskip("torch", reason="the training package needs the train extra (PyTorch)")
    from facetrack.tracker.core.schema import FaceResult
    from facetrack.tracker.facemodel.compact import load_default_model
    from facetrack.training.landmark_regressor import assemble

    rng = np.random.default_rng(5)
    face = load_default_model().neutral * [8, -8, -8] + [320, 240, 0]  # cm to pixels, image axes
    frames = (face + rng.normal(0, 1.5, (20, 478, 3))).astype(np.float32)

    def source(landmarks: np.ndarray, item: str) -> dict[str, np.ndarray]:
        n = len(landmarks)
        return {"landmarks": landmarks, "size": np.tile([640, 480], (n, 1)), "blendshapes": np.zeros((n, 52)),
                "rotation": np.tile([0.0, 0.0, 0.0, 1.0], (n, 1)), "item": np.array([item] * n)}

    faces = assemble({"clip-a": source(frames, "clip-a"), "clip-a~m": source(frames, "clip-a"),
                      "img-p": source(frames[:3], "img-p/x.jpg")})
    clip, photos = faces.source == "clip-a", faces.source == "img-p"
    np.testing.assert_array_equal(faces.context[faces.source == "clip-a~m"], faces.context[clip])
    np.testing.assert_array_equal(faces.context[photos], faces.features[photos])
    assert not np.allclose(faces.context[clip][-1], faces.features[clip][-1])  # a clip's context is its median

    stage = RegressStage(SHIPPED_ENGINE, backend="cpu")
    stage.start(30.0)  # 20 frames: before the rest face (30), so the weights are the engine's own
    given = []
    for landmarks in frames:
        result = FaceResult.model_construct(track_id=4, landmarks=landmarks)
        stage.write(np.zeros((480, 640, 3), np.uint8), [result])
        given.append(result.blendshapes)
    expected = LandmarkRegressEngine(SHIPPED_ENGINE, backend="cpu").predict(faces.take(clip).inputs())
    np.testing.assert_allclose(np.stack(given), np.clip(expected["expression"], 0, 1), atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's own notice
def test_an_engine_without_the_track_context_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """An engine exported before the context (input: the features alone) would read the context as noise."""
    pytest.importorskip("torch", reason="builds a small ONNX file with PyTorch")
    import torch

    from facetrack.training.export import attach_metadata

    path = tmp_path / "regress.onnx"

    class Old(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x[:, :52] * 0, x[:, :3] * 0

    torch.onnx.export(Old(), torch.zeros(1, N_FEATURES), str(path), input_names=["features"],
                      output_names=["expression", "rotation"], dynamic_axes={"features": {0: "n"}}, dynamo=False)
    attach_metadata(path, {"engine": "regress", "input": "landmarks", "features": N_FEATURES, "version": "old",
                           "outputs": {"expression": 52, "rotation": 3}})  # an old sidecar: no context_window
    with pytest.raises(EngineError, match="rebuild it with scripts/train_landmark_regressor.py"):
        RegressStage(path, backend="cpu")
    copy = tmp_path / "wide.onnx"  # the right width, but no word of the context's window
    shutil.copy(SHIPPED_ENGINE, copy)
    meta = json.loads(sidecar_path(SHIPPED_ENGINE).read_text())
    attach_metadata(copy, {k: v for k, v in meta.items() if k not in ("context_window", "sha256", "bytes")})
    with pytest.raises(EngineError, match="context of 0 frames"):
        RegressStage(copy, backend="cpu")


def _run(clip: Path, **config) -> list:
    with Tracker(TrackerConfig(backend="cpu", max_frames=60, filter={"enabled": False}, **config)) as tracker:
        return [r.faces[0] if r.faces else None for r in tracker.track(clip)]


@pytest.mark.media
def test_engine_regress_on_a_real_clip_agrees_with_the_fit(face_clip: Path) -> None:
    """What the shipped engine learnt: on 60 real frames of a mostly still face its weights and rotation are near
    the current fit's and nearer than all zeros (0.77x of them with the head's sparse weights; the held-out
    table in the model card is the measure). A fit changed since the engine was built fails here: rebuild it."""
    regress, fit = _run(face_clip, coefficients="regress"), _run(face_clip)
    pairs = [(r, f) for r, f in zip(regress, fit) if r is not None and f is not None]
    assert len(pairs) >= 50
    w_regress = np.stack([r.blendshapes for r, _ in pairs])
    w_fit = np.stack([f.blendshapes for _, f in pairs])
    assert ((w_regress >= 0) & (w_regress <= 1)).all()
    mae, zeros = np.abs(w_regress - w_fit).mean(), np.abs(w_fit).mean()
    assert mae < 0.06 and mae < zeros, (mae, zeros)
    angle = [np.degrees((Rotation.from_quat(r.pose.rotation).inv() * Rotation.from_quat(f.pose.rotation)).magnitude())
             for r, f in pairs]
    assert np.median(angle) < 4.0, np.median(angle)
    assert all(r.pose.translation[2] < 0 for r, _ in pairs)  # in front of the camera


@pytest.mark.media
def test_mirrored_frames_are_the_frames_flipped(short_face_clip: Path) -> None:
    from facetrack.tracker.sources.frame_source import open_source
    from facetrack.training.regress_data import MirroredSource

    with av.open(str(short_face_clip)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    source = MirroredSource(open_source(short_face_clip))
    try:
        frame = next(iter(source))
    finally:
        source.close()
    np.testing.assert_array_equal(frame.image, first[:, ::-1])
    assert source.info.width == first.shape[1]


def test_the_regress_stage_writes_every_face_of_a_batch_the_same_way() -> None:
    rng = np.random.default_rng(2)
    from facetrack.tracker.core.schema import FaceResult

    stage = RegressStage(SHIPPED_ENGINE, backend="cpu", max_faces=2)
    points = rng.normal(0, 20, (478, 3)) + [320, 240, 0]
    faces = [FaceResult.model_construct(track_id=i, landmarks=points.astype(np.float32)) for i in range(2)]
    stage.write(np.zeros((480, 640, 3), np.uint8), faces)
    np.testing.assert_allclose(faces[0].blendshapes, faces[1].blendshapes)
    assert faces[0].blendshapes.shape == (len(ARKIT_BLENDSHAPES),) and faces[0].pose == faces[1].pose


@pytest.mark.parametrize("backend", ["cuda", "tensorrt"])
def test_the_gpu_backends_give_the_cpu_answers_or_skip_with_the_reason(backend: str) -> None:
    from facetrack.engines.backends import select_backend

    try:
        select_backend(backend)
    except EngineError as exc:
        pytest.skip(str(exc))
    rows = np.random.default_rng(3).standard_normal((64, N_INPUT)).astype(np.float32)
    cpu = LandmarkRegressEngine(SHIPPED_ENGINE, backend="cpu").predict(rows)
    gpu = LandmarkRegressEngine(SHIPPED_ENGINE, backend=backend).predict(rows)  # TensorRT: FP16
    for name in cpu:
        np.testing.assert_allclose(gpu[name], cpu[name], atol=0.02)


def test_held_out_clips_are_whole_identities_and_a_wrong_name_is_refused() -> None:
    pytest.importorskip("torch", reason="the training package needs the train extra (PyTorch)")
    from facetrack.training.landmark_regressor import FaceSet, held_out_mask

    identity = np.array(["clip-video-retalking-4"] * 3 + ["clip-video-retalking-5"] * 2 + ["img-a/x.jpg"])
    n = len(identity)
    none = np.zeros((n, N_FEATURES), np.float32)
    faces = FaceSet(none, none, np.zeros((n, 3, 3)), np.zeros((n, 52), np.float32),
                    np.zeros((n, 3, 3)), np.zeros((n, 3), np.float32), identity, identity)
    held = held_out_mask(faces, ("video-retalking/4",), photo_fraction=0.0)
    assert held.tolist() == [True] * 3 + [False] * 3
    assert held_out_mask(faces, (), photo_fraction=1.0).tolist() == [False] * 5 + [True]
    with pytest.raises(ValueError, match="held-out clips not in the data"):
        held_out_mask(faces, ("video-retalking/6",), photo_fraction=0.0)


@pytest.mark.media
def test_batch_engine_regress_tracks_clips_with_the_shipped_engine(short_face_clip: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from facetrack.adapters.file_sinks import read_metadata, read_results

    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", "from facetrack.tracker.cli.batch import main; main()",
                           str(short_face_clip), "--out-dir", str(out), "--format", "npz", "--workers", "1",
                           "--engine", "regress", "--quiet"], capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    (result,) = out.glob("*.npz")
    assert read_metadata(result).model_id == "regress"
    frames = read_results(result)
    assert len(frames) == 40 and all(f.faces[0].blendshapes.shape == (52,) for f in frames)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["coefficients"] == "regress"
