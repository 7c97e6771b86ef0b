"""The streaming pipeline: source -> landmarks -> tracks -> eye state + ELAM -> model fit (or the regress
engine) -> lid/lip dynamics -> gaze -> temporal filter -> eye events -> FrameResult -> sinks.

Per-stage timings (`Tracker.timings`): landmarks (what the tracker's thread spends on or waits
for the engine: with a file, a pipelined engine finds frame N+1's landmarks while frame N is
finished), eyes (crops, eye-state engine, ELAM), fit, regress (the frame's face crops in one
engine batch, `coefficients="regress"`) or pose (neither), dynamics (online LDL, fit only),
gaze (eyeLook* from the irises), filter, events (openness, mouth, blinks); each summed over a
frame's faces.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from facetrack.engines.base import DetectedFace, LandmarkEngine, PipelinedLandmarkEngine
from facetrack.engines.landmarks import make_landmark_engine, require_runtime
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.core import interrupts
from facetrack.tracker.core.geometry import landmark_box
from facetrack.tracker.core.schema import EyeEvent, FaceResult, FrameResult, StreamMetadata
from facetrack.tracker.core.sinks import Sink, end_sinks
from facetrack.tracker.core.timing import StageClock, StageTimings
from facetrack.tracker.facemodel.priors import exclude_antagonists
from facetrack.tracker.sources.config import Frame
from facetrack.tracker.sources.frame_source import FrameSource, open_source
from facetrack.tracker.sources.stills import StillFaces
from facetrack.tracker.stages.dynamics import LipLidDynamics
from facetrack.tracker.stages.eye_state import EyeMeasure, EyeStage
from facetrack.tracker.stages.filter import FaceFilter
from facetrack.tracker.stages.fit import FitStage
from facetrack.tracker.stages.pose import estimate_head_pose
from facetrack.tracker.stages.tracks import Track, TrackAssigner

if TYPE_CHECKING:  # loaded only for coefficients="regress" (it brings scipy.spatial)
    from facetrack.tracker.stages.regress import RegressStage

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
        self._engine_factory = engine_factory or make_landmark_engine
        self.timings = StageTimings()
        self.metadata: StreamMetadata | None = None
        self._source: FrameSource | None = None
        # the slow part to load: loaded once here, so a bad engine fails before any output exists (its per-track
        # rest faces start afresh with each stream)
        self._regress: RegressStage | None = None
        with interrupts.deferred():  # native libraries initialise here: a Ctrl-C waits for them
            require_runtime(self.config)
            if self.config.coefficients == "regress":
                from facetrack.tracker.stages.regress import RegressStage

                self._regress = RegressStage(self.config.regressor, self.config.backend, self.config.max_faces,
                                             self.config.focal_px, self.config.calibration)
            # the face model (with a saved --neutral) and the eye engine are loaded here too, for the same
            # reason; each stream gets fresh ones
            self._fit, self._eyes = self._new_stages()
        self._stages_used = False
        self._dynamics: LipLidDynamics | None = None
        self._filter: FaceFilter | None = None
        self._fps: float | None = None
        self._stills = False

    def track(self, source: SourceLike) -> Iterator[FrameResult]:
        """Results for every frame of `source`, in order (live sources may skip frames, counted).

        The source is opened here, so a missing file or camera raises at the call.
        """
        return self._results(self._open(source))

    def _open(self, source: SourceLike) -> FrameSource:
        frames = source if isinstance(source, FrameSource) else open_source(source, self.config.source)
        self._source = frames
        if self._stages_used:  # per-track state (identity, blinks) belongs to one stream
            self._fit, self._eyes = self._new_stages()
        self._stages_used = True
        if self._fit is not None:
            self._fit.start(frames.info.fps)
        if self._regress is not None:
            self._regress.start(frames.info.fps)
        eyes = self.config.eyes
        self._dynamics = LipLidDynamics() if eyes.enabled and eyes.dynamics and self._fit is not None else None
        self._stills = frames.stills
        # a folder of photos is not a motion: nothing to smooth across them
        smooth = self.config.filter.enabled and not self._stills
        self._filter = FaceFilter(self.config.filter, self.config.eyes.blink_snap) if smooth else None
        self._fps = frames.info.fps
        metadata = StreamMetadata(stream_id=self.config.stream_id, source=frames.info, started_at=time.time())
        stage = self._fit or self._regress
        self.metadata = stage.describe(metadata) if stage is not None else metadata
        return frames

    def _new_stages(self) -> tuple[FitStage | None, EyeStage | None]:
        """The model fit (unless the regress engine stands in for it) and the eye stage, as configured."""
        fit = (
            FitStage(self.config.model, self.config.focal_px, mesh=self.config.mesh,
                     calibration=self.config.calibration, mediapipe_weights=self.config.mediapipe_weights)
            if self.config.model and self._regress is None else None
        )
        eyes = EyeStage(self.config.eyes, self.config.backend) if self.config.eyes.enabled else None
        return fit, eyes

    def _results(self, frames: FrameSource) -> Iterator[FrameResult]:
        engine: LandmarkEngine | None = None
        try:
            with interrupts.deferred():  # a Ctrl-C while the native graph loads is raised once it has loaded
                engine = self._engine_factory(self.config, frames.stills)
            if frames.stills:  # a face crop cut tight at the face is found with a border around it
                engine = StillFaces(engine, self.config.source.still_pad)
            tracks = TrackAssigner()
            limit = self.config.max_frames
            frames_in = frames if limit is None else itertools.islice(frames, limit)
            # A live frame is finished before the next is awaited (latency); a file's next frame is already
            # decoded, so its landmarks run while this thread finishes the frame before (throughput).
            if self.config.overlap and isinstance(engine, PipelinedLandmarkEngine) and not frames.live:
                yield from self._pipelined(frames_in, engine, tracks)
            else:
                for frame in frames_in:
                    t0 = time.perf_counter()
                    detected = engine.process(frame.image)
                    yield self._process(frame, detected, time.perf_counter() - t0, tracks)
        finally:
            if engine is not None:
                engine.close()
            frames.close()

    def _pipelined(self, frames: Iterable[Frame], engine: PipelinedLandmarkEngine,
                   tracks: TrackAssigner) -> Iterator[FrameResult]:
        """Frame N+1 goes to the engine before frame N is finished; results still come in frame order."""
        pending: tuple[Frame, list[DetectedFace], float] | None = None
        frames = iter(frames)
        while True:
            try:
                frame = next(frames, None)
            except Exception:
                if pending is not None:  # the source broke off: the frame it delivered last is still owed
                    yield self._process(*pending, tracks)
                raise
            if frame is None:
                break
            t0 = time.perf_counter()
            engine.submit(frame.image)
            submit_s = time.perf_counter() - t0
            if pending is not None:
                yield self._process(*pending, tracks)
            t1 = time.perf_counter()
            pending = (frame, engine.collect(), submit_s + time.perf_counter() - t1)
        if pending is not None:
            yield self._process(*pending, tracks)

    def _process(self, frame: Frame, detected: list[DetectedFace], landmarks_s: float,
                 tracks: TrackAssigner) -> FrameResult:
        """Everything after the landmarks; `landmarks_s` is what this thread spent on (or waiting for) them."""
        height, width = frame.image.shape[:2]
        boxes = [landmark_box(face.landmarks) for face in detected]
        assigned = tracks.assign(boxes, [face.detection_score for face in detected])
        events = self._forget(tracks.ended)
        clock = StageClock(self._stages())
        t = self._time_of(frame)
        measured = [
            self._measure_face(face, box, track, frame, clock) for face, box, track in zip(detected, boxes, assigned)
        ]
        if self._regress is not None:
            clock.start()
            self._regress.write(frame.image, [result for result, _ in measured])
            clock.lap("regress")
        faces = [self._describe_face(result, measure, frame, t, events, clock) for result, measure in measured]
        if self._stills:  # a photo's faces end with it: its closures are reported on its own record
            events += self._forget(tracks.end_all())
        self.timings.record("landmarks", landmarks_s)
        for stage, seconds in clock.seconds.items():
            self.timings.record(stage, seconds)
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
            eye_events=events or None,
            source=frame.source,
        )

    def _forget(self, ended: list[int]) -> list[EyeEvent]:
        """Free the per-track state of ended tracks; returns the eye events their open closures end with."""
        if self._fit is not None:
            self._fit.forget(ended)
        if self._regress is not None:
            self._regress.forget(ended)
        if self._filter is not None:
            self._filter.forget(ended)
        return self._eyes.forget(ended) if self._eyes is not None else []

    def _stages(self) -> list[str]:
        names = ["eyes"] if self._eyes is not None else []
        names.append("fit" if self._fit is not None else "regress" if self._regress is not None else "pose")
        if self._dynamics is not None:
            names.append("dynamics")
        if self._eyes is not None and (self._fit is not None or self._regress is not None):
            names.append("gaze")
        if self._filter is not None:
            names.append("filter")
        if self._eyes is not None:
            names.append("events")
        return names

    def _time_of(self, frame: Frame) -> float:
        """Seconds for the filter: the presentation time, else the index at the frame rate, else the clock."""
        if frame.pts is not None:
            return float(frame.pts)
        if self._fps:
            return frame.index / float(self._fps)
        return float(frame.capture_time)

    def _measure_face(
        self, face: DetectedFace, box: np.ndarray, track: Track, frame: Frame, clock: StageClock,
    ) -> tuple[FaceResult, EyeMeasure | None]:
        """A face's result so far: landmarks, eye state and ELAM (what the fit or the regressor start from)."""
        result = FaceResult.model_construct(
            track_id=track.track_id,
            bbox=tuple(box.tolist()),
            score=track.score,
            landmarks=face.landmarks,
            pose=None,
            blendshapes=None,
            coefficients=None,
            landmarks68=None,
            eyes=None,
            mouth_openness=None,
        )
        clock.start()
        measure: EyeMeasure | None = None
        if self._eyes is not None:
            measure = self._eyes.measure(frame.image, result)
            clock.lap("eyes")
        return result, measure

    def _describe_face(
        self, result: FaceResult, measure: EyeMeasure | None, frame: Frame, t: float, events: list[EyeEvent],
        clock: StageClock,
    ) -> FaceResult:
        """The rest of a face's result: the model fit (unless the regressor wrote it; else the rigid pose),
        dynamics, gaze, filter, events."""
        height, width = frame.image.shape[:2]
        clock.start()
        if self._fit is not None:
            fit = self._fit.fit(result, (width, height))
            clock.lap("fit")
            if self._dynamics is not None:
                self._dynamics.refine(fit, result.landmarks, None if measure is None else measure.open_opening)
                clock.lap("dynamics")
            if measure is not None:  # eyeBlink (and so the mesh) on the side of the eye verdict
                self._eyes.reconcile(fit, measure)
                clock.lap("events")
            self._fit.write(result, fit)
            clock.lap("fit")
        elif self._regress is None:
            result.pose = estimate_head_pose(result.landmarks, (width, height), self.config.focal_px)
            clock.lap("pose")
        if measure is not None and result.blendshapes is not None:
            self._eyes.gaze(result, measure)
            clock.lap("gaze")
        if self._filter is not None:
            self._filter.apply(result, t)
            clock.lap("filter")
        if self._fit is not None and result.blendshapes is not None:
            # the fit excludes antagonists; smoothing and the lid/lip stages can overlap a fading shape
            # with its rising antagonist again
            result.blendshapes = exclude_antagonists(result.blendshapes)
        if measure is not None:
            events.extend(self._eyes.finish(result, measure, frame.index))
            clock.lap("events")
        return result

    def run(
        self,
        source: SourceLike,
        sinks: Iterable[Sink],
        on_result: Callable[[FrameResult], None] | None = None,
    ) -> int:
        """Track `source` into `sinks`; returns the number of frames processed.

        Sinks are closed (files flushed and renamed, sockets closed) when the run completes or ends
        (source error, KeyboardInterrupt) after at least one frame; a run that ends before its first
        frame discards what it began (`DiscardableSink`), so a refusal never replaces an earlier file.
        """
        sinks = list(sinks)
        count = 0
        completed = False
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
            completed = True
        finally:
            self.close()
            end_sinks(sinks, keep=completed or count > 0)
        return count

    @property
    def calibrates(self) -> bool:
        """Whether `recalibrate` applies: the run has a fitted model or the regress engine."""
        return self._regress is not None or self._fit is not None

    def recalibrate(self, seconds: float = 2.0) -> None:
        """Take every current track's rest face from its next `seconds` (the person holds a neutral face)."""
        if self._regress is not None:
            self._regress.recalibrate(self._regress.rest.track_ids(), seconds)
            return
        if self._fit is None:
            raise RuntimeError("recalibrate needs a fitted model or the regress engine: start tracking with one")
        self._fit.recalibrate(self._fit.fitter.track_ids(), seconds)

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
        path = self.config.calibration.save_neutral
        if path is not None and self._fit is not None:
            if self._fit.save_neutral(path) is None:
                log.warning("no track was calibrated: %s not written", path)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

