"""The `regress` stage: each face's coefficients from the regress engine instead of the model fit.

Two kinds of engine, told apart by their sidecar. The shipped one (and any with
`input: "landmarks"`) is landmark-conditioned: per frame, all faces' `landmark_features`,
each with its track's context (`TrackContext`: the track's median features so far), go
through it in one call; it gives the 52 ARKit weights and the rotation remainder D, the
head rotation is R0 @ exp(D) (R0: the landmarks' rigid rotation), the translation is the
landmarks' own (`head_translation`, as below). It has no identity coefficients. It is used
unless a user engine is installed in the data directory or given (`--regressor`).

A crop engine (`facetrack train regressor`) works so, per frame, for all faces at once:

1. the 68 iBUG points of each face from its 478 landmarks (`ibug68_from_478`: the built-in
   rig's own 68-point embedding, the jaw spaced along the face oval as `jaw_embedding` does);
2. a square crop around them, cut by `crop_face`, the function the training crops were cut with;
3. the engine: expression -> the 52 ARKit blendshapes (the built-in rig's expression basis
   is ARKit's 52 shapes in ARKit's order, so the weights are the blendshapes as they are);
   identity + expression -> `FaceResult.coefficients`; the 68 points -> `landmarks68`;
4. the head pose: rotation from the regressor, translation from the landmarks.

Why the pose is split so: the regressor's pose is weak perspective in crop pixels. Its
translation and scale only say where the face sits in a crop that was cut around the
landmarks, so the landmarks' own estimate (`head_translation`, the one `model=None` reports:
eye-corner distance under the pinhole camera) gives the head's position in centimetres. Its
rotation is the one the face shows in the crop, and is used as it is: that is what the
fitter reports too (on a face 8 degrees off the optical axis, s18.mp4, the landmarks' rigid
rotation agrees with the fit within 1 degree; turning it by the direction of the ray to the
camera moved it 6 degrees away). The crop is not rotated, so its axes are the image's.
Without the fitter there are no dynamics (they refine the fit's lid and lip weights) and no
dense mesh. Each track's weights are taken relative to its own calm face (`regress_rest`), as
the fit solves against each person's rest face.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from facetrack.engines.backends import BackendName
from facetrack.engines.onnx_runtime import EngineError
from facetrack.engines.regress import RegressEngine, crop_face
from facetrack.engines.regress_landmarks import LandmarkRegressEngine, is_landmark_engine, regress_engine_path
from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES, FaceCoefficients, FaceResult, StreamMetadata
from facetrack.tracker.facemodel.builtin_rig import ibug68_from_478
from facetrack.tracker.facemodel.rest_face import RestFaceOptions
from facetrack.tracker.stages.pose import head_translation, pose_from_matrix
from facetrack.tracker.stages.regress_features import N_FEATURES, TrackContext, engine_input, landmark_features
from facetrack.tracker.stages.regress_rest import RegressRest, RegressRestConfig

MODEL_ID = "regress"
"""`model_id` of the coefficients the stage writes (their layout is in the stream metadata)."""


class RegressStage:
    """Writes blendshapes, coefficients, landmarks68 and pose of every face of a frame from one engine batch."""

    def __init__(self, path: Path | None = None, backend: BackendName = "auto", max_faces: int = 1,
                 focal_px: float | None = None, calibration: RestFaceOptions | None = None) -> None:
        path = regress_engine_path(path)
        self.focal_px = focal_px
        self.calibration = calibration or RestFaceOptions()
        self.rest = RegressRest()
        self.fps = 30.0
        self.landmark_engine: LandmarkRegressEngine | None = None
        if is_landmark_engine(path):
            self.landmark_engine = LandmarkRegressEngine(path, backend, max_batch=max(max_faces, 1))
            engine = self.landmark_engine
            if engine.features != 2 * N_FEATURES or engine.context_window < 1:
                engine.close()
                raise EngineError(f"{path.name} takes {engine.features} numbers per face with a context of "
                                  f"{engine.context_window} frames; this version gives {2 * N_FEATURES} (a face's "
                                  "features and its track's context): rebuild it with "
                                  "scripts/train_landmark_regressor.py")
            self.context = TrackContext(self.landmark_engine.context_window)
            self.identity_size = 0
            return
        self.engine = RegressEngine(path, backend, max_batch=max_faces)
        sizes = self.engine.sizes
        missing = {"identity", "expression", "pose"} - set(sizes)
        if missing:
            raise EngineError(f"{path.name} has no {', '.join(sorted(missing))} output: not a coefficient regressor")
        if sizes["expression"] != len(ARKIT_BLENDSHAPES):
            raise EngineError(
                f"{path.name} gives {sizes['expression']} expression weights; run-time blendshapes need the "
                f"{len(ARKIT_BLENDSHAPES)} ARKit ones of the built-in rig: train with a built-in-rig face model "
                "as the recipe's `model.face_model` (docs/training.md, 'Distilling the fitter')")
        self.identity_size = sizes["identity"]

    def start(self, fps: float | None) -> None:
        """A new stream: fresh rest faces, over the first N seconds of each track when --calibrate N is given."""
        self.fps = fps or 30.0
        seconds = self.calibration.seconds
        config = RegressRestConfig() if seconds is None else RegressRestConfig(
            window=self.frames(seconds), early=0, keep=0.5)
        self.rest = RegressRest(config, "auto" if seconds is None else "on demand")
        if self.landmark_engine is not None:
            self.context = TrackContext(self.context.window)

    def frames(self, seconds: float) -> int:
        return max(1, round(seconds * self.fps))

    def recalibrate(self, track_ids: list[int], seconds: float) -> None:
        """Take these tracks' rest faces from their next `seconds` (the person holds a neutral face)."""
        self.rest.recalibrate(track_ids, self.frames(seconds))

    def forget(self, track_ids: list[int]) -> None:
        self.rest.forget(track_ids)
        if self.landmark_engine is not None:
            self.context.forget(track_ids)

    def describe(self, metadata: StreamMetadata) -> StreamMetadata:
        """The stream metadata with the regressor's coefficient layout and how rest faces are found."""
        return metadata.model_copy(update={
            "model_id": MODEL_ID,
            "identity_size": self.identity_size,
            "expression_size": len(ARKIT_BLENDSHAPES),
            "expression_names": list(ARKIT_BLENDSHAPES),
            "calibration": {"mode": "on demand" if self.calibration.seconds else "auto",
                            "window_frames": self.rest.config.window, "neutral_file": None},
        })

    def write(self, image: np.ndarray, faces: list[FaceResult]) -> None:
        """Run every face of the frame as one batch and write the results into the faces."""
        if not faces:
            return
        height, width = image.shape[:2]
        focal = float(self.focal_px or width)
        landmarks = np.stack([np.asarray(f.landmarks) for f in faces])
        translation = np.stack([head_translation(p, (width, height), focal) for p in landmarks])
        points = [ibug68_from_478(p) for p in landmarks]
        if self.landmark_engine is not None:
            features, r0 = landmark_features(landmarks, (width, height), focal)
            context = self.context.update([f.track_id for f in faces], features)
            out = self.landmark_engine.predict(engine_input(features, context))
            rotation = r0 @ Rotation.from_rotvec(out["rotation"].astype(np.float64)).as_matrix()
            identity = np.zeros((len(faces), 0), np.float32)
        else:
            out = self.engine.predict(np.stack([crop_face(image, p, self.engine.input_size)[0] for p in points]))
            rotation = Rotation.from_rotvec(out["pose"][:, :3].astype(np.float64)).as_matrix()  # head -> camera
            identity = out["identity"]
        expression = np.clip(out["expression"], 0.0, 1.0)
        for i, face in enumerate(faces):
            weights = self.rest.apply(face.track_id, expression[i])
            face.blendshapes = weights.copy()
            face.coefficients = FaceCoefficients.model_construct(
                model_id=MODEL_ID, identity=identity[i].copy(), expression=weights.copy(),
                calibration=self.rest.calibration(face.track_id))
            face.landmarks68 = points[i]
            face.pose = pose_from_matrix(rotation[i], translation[i])
