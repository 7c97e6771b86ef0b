"""mediapipe's face-mesh graph (478 points with irises) as a landmark engine.

The models ship inside the mediapipe 0.10.21 wheel and are loaded from the installed
package. We run the same graph as `mp.solutions.face_mesh.FaceMesh`, but also ask for
its detection stream so faces carry the detector's score.

The graph runs on its own threads: `submit` hands it a frame and returns at once,
`collect` waits for that frame's faces. The tracker submits frame N+1 before it finishes
frame N (fit, eyes, sinks), so on two cores the landmarks of one frame overlap the rest of
the previous one (`process` = submit + collect, for callers that want one call).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

os.environ.setdefault("GLOG_minloglevel", "2")  # before mediapipe loads; the CLI sets it first (-v: 0)

import numpy as np


def _register_unexecuted(name: str) -> None:
    """Make package `name` importable without running its `__init__.py` until something needs that.

    mediapipe's `__init__` imports the whole Tasks API (audio with sounddevice, text, vision) and its
    solutions' `__init__` imports matplotlib through the drawing utilities: 0.5-0.8 s and about 90 MB
    of a run's start that the face-mesh graph never uses. Registered unexecuted, a submodule imports on
    its own (also as an attribute: `solutions.face_mesh`); the first lookup of a name only `__init__`
    provides (`mediapipe.solutions`, `__version__`) runs it then, so code that uses the whole package
    still gets it.
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return  # not installed: the import below says so
    package = importlib.util.module_from_spec(spec)

    def lookup(attribute: str) -> object:
        if importlib.util.find_spec(f"{name}.{attribute}") is not None:
            return importlib.import_module(f"{name}.{attribute}")
        del package.__dict__["__getattr__"]
        spec.loader.exec_module(package)
        return getattr(package, attribute)

    package.__getattr__ = lookup  # type: ignore[attr-defined]
    sys.modules[name] = package
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, package)


_register_unexecuted("mediapipe")
_register_unexecuted("mediapipe.python.solutions")

# face_mesh registers the calculator options its graph is written with; SolutionBase builds the graph
from mediapipe.python.solution_base import SolutionBase  # noqa: E402
from mediapipe.python.solutions import face_mesh as _face_mesh_options  # noqa: E402, F401

from facetrack.engines.base import DetectedFace  # noqa: E402
from facetrack.tracker.core import native_logs  # noqa: E402
from facetrack.tracker.core.geometry import iou_matrix, landmark_box  # noqa: E402

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


log = logging.getLogger("facetrack.engines")
# mediapipe's native code logs set-up chatter (TFLite delegate, absl warnings) straight to
# file descriptor 2 on its first inferences. We hide it for the first frames, until a face
# has gone through both models, unless native logs are shown (-v).
_QUIET_FRAMES = 100


def _landmarks_to_array(landmark_list, width: int, height: int) -> np.ndarray:
    """(478, 3) pixels from a NormalizedLandmarkList, parsing its bytes when the layout is the usual one."""
    raw = landmark_list.SerializeToString()
    if len(raw) == _LANDMARKS * _RECORD and raw[0] == 0x0A and raw[1] == _RECORD - 2:
        records = np.frombuffer(raw, np.uint8).reshape(_LANDMARKS, _RECORD)
        points = records[:, _FLOAT_BYTES].copy().view("<f4")
    else:
        points = np.array([(p.x, p.y, p.z) for p in landmark_list.landmark], np.float32)
    return points * np.array([width, height, width], np.float32)


class _FaceMeshGraph(SolutionBase):
    """SolutionBase split into submit and collect (its `process` does both and blocks in between)."""

    _FRAME_US = 33333  # the timestamp step SolutionBase.process uses: a 30 fps video

    def submit(self, image: np.ndarray) -> None:
        self._graph_outputs.clear()
        self._simulated_timestamp += self._FRAME_US
        stream = next(iter(self._input_stream_type_info))
        packet = self._make_packet(self._input_stream_type_info[stream], image).at(self._simulated_timestamp)
        self._graph.add_packet_to_input_stream(stream=stream, packet=packet)

    def collect(self) -> tuple[list | None, list | None]:
        """(multi_face_landmarks, face_detections) of the frame submitted last; None where a stream had none."""
        self._graph.wait_until_idle()
        types = self._output_stream_type_info
        return tuple(self._get_packet_content(types[name], self._graph_outputs[name])
                     if name in self._graph_outputs else None
                     for name in ("multi_face_landmarks", "face_detections"))


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
        self._quiet_frames = 0 if native_logs.shown() else _QUIET_FRAMES
        self._silencer = native_logs.StderrSilencer()
        if self._quiet_frames:
            self._silencer.start()
        self._size: tuple[int, int] | None = None
        self._graph = _FaceMeshGraph(
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
        self.submit(image)
        return self.collect()

    def submit(self, image: np.ndarray) -> None:
        """Start the graph on an HxWx3 uint8 RGB image (copied: the caller may reuse the array)."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
        self._size = (image.shape[1], image.shape[0])
        self._graph.submit(image)

    def collect(self) -> list[DetectedFace]:
        """The faces of the image submitted last (waits for the graph)."""
        if self._size is None:
            raise RuntimeError("collect() without a submit()")
        width, height = self._size
        self._size = None
        landmarks, detections = self._graph.collect()
        if self._quiet_frames:
            self._quiet_frames = 0 if landmarks else self._quiet_frames - 1
            if not self._quiet_frames:
                self._silencer.stop()
        if not landmarks:
            return []
        faces = [_landmarks_to_array(lm, width, height) for lm in landmarks]
        scores = self._match_detection_scores(faces, detections, width, height)
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
        self._silencer.stop()
        self._graph.close()

    def __enter__(self) -> MediapipeFaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
