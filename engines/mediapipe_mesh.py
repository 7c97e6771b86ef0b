"""mediapipe's face-mesh graph (478 points with irises) as a landmark engine.

The models ship inside the mediapipe 0.10.21 wheel and are loaded from the installed
package. We run the same graph as `mp.solutions.face_mesh.FaceMesh`, but also ask for
its detection stream so faces carry the detector's score.
"""

from __future__ import annotations

import os

os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np
from mediapipe.python.solution_base import SolutionBase

from facetrack.engines.base import DetectedFace
from facetrack.tracker.geometry import iou_matrix, landmark_box

_GRAPH = "mediapipe/modules/face_landmark/face_landmark_front_cpu.binarypb"
_DETECTION_THRESHOLD = (
    "facedetectionshortrangecpu__facedetectionshortrange__facedetection__"
    "TensorsToDetectionsCalculator.min_score_thresh"
)
_TRACKING_THRESHOLD = "facelandmarkcpu__ThresholdingCalculator.threshold"
_LANDMARKS = 478
# A serialised NormalizedLandmarkList holds 478 submessages of 17 bytes each:
# tag+length, then tag+float32 for x, y and z. Column indices of the 12 float bytes.
_RECORD = 17
_FLOAT_BYTES = np.array([3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16])


def _landmarks_to_array(landmark_list, width: int, height: int) -> np.ndarray:
    """(478, 3) pixels from a NormalizedLandmarkList, parsing its bytes when the layout is the usual one."""
    raw = landmark_list.SerializeToString()
    if len(raw) == _LANDMARKS * _RECORD and raw[0] == 0x0A and raw[1] == _RECORD - 2:
        records = np.frombuffer(raw, np.uint8).reshape(_LANDMARKS, _RECORD)
        points = records[:, _FLOAT_BYTES].copy().view("<f4")
    else:
        points = np.array([(p.x, p.y, p.z) for p in landmark_list.landmark], np.float32)
    return points * np.array([width, height, width], np.float32)


class MediapipeFaceMesh:
    """mediapipe face mesh with attention refinement (irises, lids, lips): 478 points."""

    name = "mediapipe-facemesh"

    def __init__(
        self,
        max_faces: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        static_images: bool = False,
    ) -> None:
        self._graph = SolutionBase(
            binary_graph_path=_GRAPH,
            side_inputs={
                "num_faces": max_faces,
                "with_attention": True,
                "use_prev_landmarks": not static_images,
            },
            calculator_params={
                _DETECTION_THRESHOLD: min_detection_confidence,
                _TRACKING_THRESHOLD: min_tracking_confidence,
            },
            outputs=["multi_face_landmarks", "face_detections"],
        )

    def process(self, image: np.ndarray) -> list[DetectedFace]:
        height, width = image.shape[:2]
        output = self._graph.process({"image": image})
        if not output.multi_face_landmarks:
            return []
        faces = [_landmarks_to_array(lm, width, height) for lm in output.multi_face_landmarks]
        scores = self._match_detection_scores(faces, output.face_detections, width, height)
        return [DetectedFace(points, score) for points, score in zip(faces, scores)]

    @staticmethod
    def _match_detection_scores(
        faces: list[np.ndarray], detections, width: int, height: int
    ) -> list[float | None]:
        """Give each face the score of the detection overlapping it most (the detector runs only on some frames)."""
        if not detections:
            return [None] * len(faces)
        scale = np.array([width, height, width, height], np.float64)
        rel = [d.location_data.relative_bounding_box for d in detections]
        det_boxes = np.array([(r.xmin, r.ymin, r.xmin + r.width, r.ymin + r.height) for r in rel]) * scale
        det_scores = np.array([d.score[0] for d in detections], np.float64)
        overlap = iou_matrix(np.stack([landmark_box(f) for f in faces]), det_boxes)
        best = overlap.argmax(axis=1)
        return [
            float(det_scores[j]) if overlap[i, j] > 0.1 else None for i, j in enumerate(best)
        ]

    def close(self) -> None:
        self._graph.close()

    def __enter__(self) -> MediapipeFaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
