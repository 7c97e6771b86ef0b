"""The streaming pipeline: source -> landmarks -> tracks -> pose -> model fit -> FrameResult -> sinks."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from facetrack.engines.base import DetectedFace, LandmarkEngine
from facetrack.engines.mediapipe_mesh import MediapipeFaceMesh
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.fitting import FitStage
from facetrack.tracker.geometry import landmark_box
from facetrack.tracker.pose import estimate_head_pose
from facetrack.tracker.schema import FaceResult, FrameResult, StreamMetadata
from facetrack.tracker.sinks import Sink
from facetrack.tracker.sources import Frame, FrameSource, open_source
from facetrack.tracker.timing import StageTimings
from facetrack.tracker.tracks import TrackAssigner

log = logging.getLogger("facetrack.pipeline")

SourceLike = str | os.PathLike[str] | FrameSource


class Tracker:
    """Tracks faces in a source and yields one FrameResult per frame.

    >>> with Tracker(TrackerConfig(max_faces=2)) as tracker:
    ...     for result in tracker.track("clip.mp4"):
    ...         print(result.frame_index, [f.pose.yaw for f in result.faces])
    """

    def __init__(
        self,
        config: TrackerConfig | None = None,
        engine_factory: Callable[[TrackerConfig, bool], LandmarkEngine] | None = None,
    ) -> None:
        self.config = config or TrackerConfig()
        self._engine_factory = engine_factory or _mediapipe_engine
        self.timings = StageTimings()
        self.metadata: StreamMetadata | None = None
        self._source: FrameSource | None = None
        self._fit: FitStage | None = None

    def track(self, source: SourceLike) -> Iterator[FrameResult]:
        """Results for every frame of `source`, in order (live sources may skip frames, counted).

        The source is opened here, so a missing file or camera raises at the call.
        """
        return self._results(self._open(source))

    def _open(self, source: SourceLike) -> FrameSource:
        frames = source if isinstance(source, FrameSource) else open_source(source, self.config.source)
        self._source = frames
        self._fit = FitStage(self.config.model, self.config.focal_px) if self.config.model else None
        metadata = StreamMetadata(stream_id=self.config.stream_id, source=frames.info, started_at=time.time())
        self.metadata = self._fit.describe(metadata) if self._fit else metadata
        return frames

    def _results(self, frames: FrameSource) -> Iterator[FrameResult]:
        still_images = frames.info.fps is None and not frames.live
        engine = self._engine_factory(self.config, still_images)
        tracks = TrackAssigner()
        try:
            for count, frame in enumerate(frames):
                if self.config.max_frames is not None and count >= self.config.max_frames:
                    break
                yield self._process(frame, engine, tracks)
        finally:
            engine.close()
            frames.close()

    def _process(self, frame: Frame, engine: LandmarkEngine, tracks: TrackAssigner) -> FrameResult:
        height, width = frame.image.shape[:2]
        t0 = time.perf_counter()
        detected = engine.process(frame.image)
        t1 = time.perf_counter()
        boxes = [landmark_box(face.landmarks) for face in detected]
        assigned = tracks.assign(boxes, [face.detection_score for face in detected])
        if self._fit is not None:
            self._fit.forget(tracks.ended)
        faces = [
            self._describe_face(face, box, track.track_id, track.score, (width, height))
            for face, box, track in zip(detected, boxes, assigned)
        ]
        self.timings.record("landmarks", t1 - t0)
        self.timings.record("fit" if self._fit is not None else "pose", time.perf_counter() - t1)
        return FrameResult.model_construct(
            schema_id="facetrack.frame/1",
            stream_id=self.config.stream_id,
            frame_index=frame.index,
            pts=frame.pts,
            capture_time=frame.capture_time,
            publish_time=None,
            width=width,
            height=height,
            dropped_frames=frame.dropped,
            faces=faces,
        )

    def _describe_face(
        self, face: DetectedFace, box: np.ndarray, track_id: int, score: float, image_size: tuple[int, int]
    ) -> FaceResult:
        """A face's result: the model fit when a model is configured, else the rigid landmark pose."""
        result = FaceResult.model_construct(
            track_id=track_id,
            bbox=tuple(box.tolist()),
            score=score,
            landmarks=face.landmarks,
            pose=None,
            blendshapes=None,
            coefficients=None,
            landmarks68=None,
            eyes=None,
            mouth_openness=None,
        )
        if self._fit is not None:
            self._fit.apply(result, image_size)
        else:
            result.pose = estimate_head_pose(face.landmarks, image_size, self.config.focal_px)
        return result

    def run(
        self,
        source: SourceLike,
        sinks: Iterable[Sink],
        on_result: Callable[[FrameResult], None] | None = None,
    ) -> int:
        """Track `source` into `sinks`; returns the number of frames processed.

        Sinks are closed (files flushed and renamed, sockets closed) however the run ends:
        normally, on a source error, or on KeyboardInterrupt.
        """
        sinks = list(sinks)
        count = 0
        try:
            results = self._results(self._open(source))
            for sink in sinks:
                sink.start(self.metadata)
            for result in results:
                for sink in sinks:
                    t0 = time.perf_counter()
                    sink.write(result)
                    self.timings.record(getattr(sink, "stage", type(sink).__name__), time.perf_counter() - t0)
                count += 1
                if on_result is not None:
                    on_result(result)
        finally:
            self.close()
            for sink in sinks:
                try:
                    sink.close()
                except Exception:
                    log.exception("closing %s failed", type(sink).__name__)
        return count

    def close(self) -> None:
        if self._source is not None:
            self._source.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mediapipe_engine(config: TrackerConfig, still_images: bool) -> LandmarkEngine:
    return MediapipeFaceMesh(
        max_faces=config.max_faces,
        min_detection_confidence=config.min_detection_confidence,
        min_tracking_confidence=config.min_tracking_confidence,
        static_images=still_images,
    )

