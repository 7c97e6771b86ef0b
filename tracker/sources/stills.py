"""Still photos: a face cut tight at the picture's edges (a face crop, as in face datasets) is often missed by
the face detector, which expects some context around a face. When a still gives no face, it is searched again
with a border around it; the landmarks found are moved back into the picture's own coordinates."""

from __future__ import annotations

import cv2
import numpy as np

from facetrack.engines.base import DetectedFace, LandmarkEngine, PipelinedLandmarkEngine


class StillFaces:
    """A landmark engine for stills: the engine's faces, or, when it finds none, those of the padded picture.

    It offers `submit`/`collect` whatever the engine does (an engine without them runs at `collect`), so the
    tracker's overlap of decoding and landmarks still applies.
    """

    def __init__(self, engine: LandmarkEngine, pad: float) -> None:
        self._engine = engine
        self._pad = pad
        self._image: np.ndarray | None = None
        self.name = engine.name

    def process(self, image: np.ndarray) -> list[DetectedFace]:
        return self._or_padded(image, self._engine.process(image))

    def submit(self, image: np.ndarray) -> None:
        self._image = image
        if isinstance(self._engine, PipelinedLandmarkEngine):
            self._engine.submit(image)

    def collect(self) -> list[DetectedFace]:
        image, self._image = self._image, None
        if image is None:
            raise RuntimeError("collect() before submit()")
        pipelined = isinstance(self._engine, PipelinedLandmarkEngine)
        faces = self._engine.collect() if pipelined else self._engine.process(image)
        return self._or_padded(image, faces)

    def _or_padded(self, image: np.ndarray, faces: list[DetectedFace]) -> list[DetectedFace]:
        if faces or self._pad <= 0:
            return faces
        border = int(round(self._pad * max(image.shape[:2])))
        padded = cv2.copyMakeBorder(image, border, border, border, border, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        shift = np.array([border, border, 0], np.float32)
        return [DetectedFace(np.asarray(face.landmarks, np.float32) - shift, face.detection_score)
                for face in self._engine.process(padded)]

    def close(self) -> None:
        self._engine.close()
