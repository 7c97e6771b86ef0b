"""The mesh + iris landmark engine (LiteRT and ONNX runtimes) against mediapipe's graph on a real clip."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import av
import numpy as np
import pytest

from facetrack.engines import litert
from facetrack.engines.mediapipe_mesh import MediapipeFaceMesh
from facetrack.engines.mesh_iris import ROLL_POINTS, FaceMeshIris, mediapipe_model, points_roi
from facetrack.engines.onnx_runtime import EngineError
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.pipeline import Tracker

pytestmark = [
    pytest.mark.media,
    pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                       reason="ai-edge-litert is not installed (facetrack[litert])"),
]
needs_converter = pytest.mark.skipif(importlib.util.find_spec("tflite2onnx") is None,
                                     reason="tflite2onnx is not installed (facetrack[convert])")


@pytest.fixture(scope="module")
def frames(short_face_clip: Path) -> list[np.ndarray]:
    with av.open(str(short_face_clip)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def reference(frames: list[np.ndarray]) -> list[np.ndarray]:
    with MediapipeFaceMesh() as mesh:
        return [mesh.process(image)[0].landmarks for image in frames]


def _distances(points: list[np.ndarray], reference: list[np.ndarray]) -> np.ndarray:
    """Per frame and point, distance to mediapipe's graph over the outer eye-corner distance."""
    return np.array([np.linalg.norm(p[:, :2] - r[:, :2], axis=1) / np.linalg.norm(r[33, :2] - r[263, :2])
                     for p, r in zip(points, reference)])


def test_litert_engine_tracks_like_mediapipe(frames: list[np.ndarray], reference: list[np.ndarray]) -> None:
    with FaceMeshIris(runtime="litert") as engine:
        results = [engine.process(image) for image in frames]
    assert all(len(faces) == 1 for faces in results)
    assert results[0][0].detection_score is not None and results[1][0].detection_score is None  # then tracked
    points = [faces[0].landmarks for faces in results]
    assert points[0].shape == (478, 3) and points[0].dtype == np.float32
    d = _distances(points, reference)
    # measured 0.025 mean, 0.12 max on the dev clip: another network (plain mesh, not the attention mesh)
    assert d.mean() < 0.05 and d.max() < 0.3
    assert d[:, 468:].mean() < 0.05  # irises (points 468-477) in mediapipe's order


def test_faces_in_one_batch_equal_faces_one_by_one(frames: list[np.ndarray]) -> None:
    engine = FaceMeshIris(runtime="litert")
    face = engine.process(frames[0])[0]
    rect = points_roi(face.landmarks, *ROLL_POINTS, 1.5)
    other = rect + np.array([6.0, -4.0, 10.0, 10.0, 0.05])
    batched, presence = engine.landmarks(frames[0], [rect, other])
    for i, r in enumerate((rect, other)):
        single, p = engine.landmarks(frames[0], [r])
        np.testing.assert_allclose(batched[i], single[0], atol=1e-3)
        np.testing.assert_allclose(presence[i], p[0], atol=1e-6)


def test_two_faces_are_tracked_in_one_batch(frames: list[np.ndarray]) -> None:
    """The clip beside its mirror image: two faces; the left one converges to the single-face result."""
    pair, single = FaceMeshIris(max_faces=2), FaceMeshIris()
    for i, image in enumerate(frames[:8]):
        faces = pair.process(np.concatenate([image, image[:, ::-1]], axis=1))
        assert len(faces) == 2
        left = min(faces, key=lambda f: float(f.landmarks[:, 0].mean()))
        alone = single.process(image)[0]
        if i >= 5:  # the first ROI comes from a detection on a differently letterboxed image
            assert np.abs(left.landmarks[:, :2] - alone.landmarks[:, :2]).max() < 1.5


def test_still_images_detect_every_time_and_blank_images_have_no_face(frames: list[np.ndarray]) -> None:
    engine = FaceMeshIris(static_images=True)
    assert all(f.detection_score is not None for image in frames[:3] for f in engine.process(image))
    assert engine.process(np.zeros((240, 320, 3), np.uint8)) == []


def test_a_model_file_that_is_not_the_validated_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    relative, _ = litert.MEDIAPIPE_MODELS["face_landmark"]
    monkeypatch.setitem(litert.MEDIAPIPE_MODELS, "face_landmark", (relative, "0" * 64))
    with pytest.raises(EngineError, match="sha256"):
        mediapipe_model("face_landmark")
    assert mediapipe_model("iris_landmark").is_file()


def test_tracker_runs_with_the_litert_engine(short_face_clip: Path) -> None:
    config = TrackerConfig(landmark_engine="litert", model=None, max_frames=10)
    results = list(Tracker(config).track(short_face_clip))
    assert len(results) == 10 and all(len(r.faces) == 1 for r in results)


@needs_converter
def test_onnx_conversions_run_like_litert(frames: list[np.ndarray], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from facetrack.engines.builds import convert_tflite

    monkeypatch.setenv("FACETRACK_DATA", str(tmp_path))
    path = convert_tflite("iris_landmark")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["source_sha256"] == litert.MEDIAPIPE_MODELS["iris_landmark"][1]
    assert meta["max_relative_difference_vs_litert"] < 1e-3
    mtime = path.stat().st_mtime_ns
    assert convert_tflite("iris_landmark").stat().st_mtime_ns == mtime  # reused while the source is the same
    lite, onnx = FaceMeshIris(runtime="litert"), FaceMeshIris(runtime="onnx", backend="cpu")
    for image in frames[:5]:
        a, b = lite.process(image), onnx.process(image)
        assert len(a) == len(b) == 1
        np.testing.assert_allclose(a[0].landmarks, b[0].landmarks, atol=0.2)  # pixels, after 5 tracked frames


def test_config_picks_the_landmark_engine_and_refuses_a_gpu_backend_that_cannot_run() -> None:
    from facetrack.engines import backends
    from facetrack.engines.landmarks import make_landmark_engine

    engine = make_landmark_engine(TrackerConfig(landmark_engine="litert"), still_images=False)
    assert engine.name == "litert-facemesh"
    assert make_landmark_engine(TrackerConfig(), still_images=False).name == "mediapipe-facemesh"
    if not backends.tensorrt().ok:
        with pytest.raises(EngineError, match="cannot run here"):
            make_landmark_engine(TrackerConfig(landmark_engine="onnx", backend="tensorrt"), still_images=False)
