"""The regressor's wider-jaw frames: real landmarks moved along the packaged model's jawOpen shape."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

pytest.importorskip("torch", reason="the training package needs the train extra (PyTorch)")

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES  # noqa: E402
from facetrack.tracker.facemodel.compact import load_default_model  # noqa: E402
from facetrack.training.jaw_widening import JAW, widen_jaw, widened_faces  # noqa: E402
from facetrack.training.landmark_regressor import source_faces  # noqa: E402

MODEL = load_default_model()
SHAPE = MODEL.exp_basis[int(np.argmax(MODEL.arkit_map[JAW]))]


def _on_image(head: np.ndarray, rotation: Rotation, px_per_cm: float) -> np.ndarray:
    """Head-frame points (cm) as image landmarks: turned, scaled, y and z flipped, placed at (320, 240)."""
    return rotation.apply(head) * px_per_cm * [1, -1, -1] + [320, 240, 0]


def _labels(n: int, rotation: Rotation, px_per_cm: float = 6.0, jaw: float = 0.2) -> dict[str, np.ndarray]:
    weights = np.full((n, len(ARKIT_BLENDSHAPES)), 0.1, np.float32)
    weights[:, JAW] = jaw
    return {"landmarks": np.repeat(_on_image(MODEL.neutral, rotation, px_per_cm)[None], n, 0).astype(np.float32),
            "size": np.tile([640, 480], (n, 1)).astype(np.int32), "blendshapes": weights,
            "rotation": np.tile(rotation.as_quat(), (n, 1)).astype(np.float32), "p_closed": np.zeros((n, 2)),
            "item": np.array(["clip-a"] * n)}


def test_the_jaw_opens_along_the_models_own_shape_turned_and_scaled_to_the_face() -> None:
    turn = Rotation.from_euler("xyz", [10, -25, 5], degrees=True)
    z = _labels(2, turn)
    wider = widen_jaw(z, np.array([0.0, 0.5]))
    np.testing.assert_allclose(wider["landmarks"][0], z["landmarks"][0], atol=1e-3)
    np.testing.assert_allclose(wider["landmarks"][1], _on_image(MODEL.neutral + 0.5 * SHAPE, turn, 6.0), atol=1e-2)
    assert wider["blendshapes"][1, JAW] == pytest.approx(0.7) and wider["blendshapes"][0, JAW] == pytest.approx(0.2)
    others = np.arange(len(ARKIT_BLENDSHAPES)) != JAW
    np.testing.assert_array_equal(wider["blendshapes"][:, others], z["blendshapes"][:, others])
    assert widen_jaw(_labels(1, turn, jaw=0.9), np.array([0.5]))["blendshapes"][0, JAW] == 1.0  # at most fully open


def test_widened_frames_are_of_the_given_clips_and_keep_their_clips_context() -> None:
    turn = Rotation.from_euler("y", 15, degrees=True)
    labels = {"clip-a": _labels(40, turn), "clip-b": {**_labels(10, turn), "item": np.array(["clip-b"] * 10)}}
    wider = widened_faces(labels, {"clip-a"}, fraction=0.5, seed=1)
    assert 5 < len(wider) < 35 and set(wider.identity) == {"clip-a"} and set(wider.source) == {"clip-a+jaw"}
    clip = source_faces("clip-a", labels["clip-a"])
    np.testing.assert_array_equal(wider.context, clip.context[: len(wider)])  # all rows share one face here
    assert (wider.expression[:, JAW] > 0.2).all()
    assert not np.allclose(wider.features, clip.features[: len(wider)])
    with pytest.raises(ValueError, match="no clip of these identities"):
        widened_faces(labels, {"clip-z"}, fraction=0.5)
