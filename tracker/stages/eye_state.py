"""The eye and mouth stages of the pipeline: eye state + ELAM before the fit, dynamics, gaze,
filter and events after it.

Per frame and face (see tracker/pipeline.py):

1. `EyeStage.measure`: cut both eye crops, P(closed) from the eye-state engine (one batch), how well
   each eye is seen, and the verdict open/closed (tracker/stages/events.py); ELAM-correct the upper
   lids of closed eyes (tracker/stages/eyes.py) relative to the track's calibrated open eye; the
   corrected landmarks are what the model is fitted to and what the result carries.
2. the model fit (tracker/stages/fit.py);
3. `LipLidDynamics.refine` (tracker/stages/dynamics.py): lid and lip weights matched to the
   corrected landmarks' relative pair distances; then `EyeStage.reconcile` puts the model's eyeBlink
   on the verdict's side, so the weights and the mesh say what the verdict says;
4. gaze: the eyeLook* weights from the irises (tracker/stages/gaze.py);
5. `FaceFilter` (tracker/stages/filter.py): One Euro on landmarks, pose and weights, blinks kept;
6. `EyeStage.finish`: per-eye state (verdict, P, quality, openness), mouth openness, the (filtered)
   eyeBlink weights held on the verdict's side, and the blink/wink events of tracker/stages/events.py.

Every threshold is a field of `EyeOptions` (tracker/stages/eye_options.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facetrack.tracker.core.schema import EyeEvent, Eyes, EyeState, FaceResult
from facetrack.tracker.stages import eyes as E
from facetrack.tracker.stages.events import BLINK, BlinkDetector, EyeVerdict, blink_weight, decide, eye_quality
from facetrack.tracker.stages.eye_options import EyeOptions
from facetrack.tracker.stages.gaze import eye_look

if TYPE_CHECKING:
    from facetrack.engines.backends import BackendName
    from facetrack.tracker.facemodel.fit_result import FitResult

log = logging.getLogger("facetrack.eyes")

DEFAULT_OPEN_OPENING = 0.30
"""A typical open eye's central lid gap over its width (mediapipe landmarks), until a track is calibrated."""


@dataclass
class EyeMeasure:
    """What step 1 measured for one face."""

    p_closed: np.ndarray  # (2,) left, right: as reported (the verdict's); NaN without an engine or unseen
    open_opening: np.ndarray  # (2,) the track's calibrated open-eye opening
    verdict: EyeVerdict | None = None  # None without an engine: decided from the fitted weights in `finish`


@dataclass
class _TrackEyes:
    blinks: BlinkDetector
    open_opening: np.ndarray = field(default_factory=lambda: np.full(2, np.nan))
    n_open: np.ndarray = field(default_factory=lambda: np.zeros(2))
    gaze: np.ndarray = field(default_factory=lambda: np.zeros((2, 4)))

    def calibrate(self, opening: np.ndarray, p: np.ndarray, options: EyeOptions) -> None:
        """Running estimate of the open eye's opening from frames the classifier calls open."""
        for k in range(2):
            if not np.isfinite(opening[k]):
                continue
            trusted = ((np.isfinite(p[k]) and p[k] < options.calibrate_p_open)
                       or (not np.isfinite(p[k]) and opening[k] > options.calibrate_opening_open))
            if not trusted:
                continue
            if self.n_open[k] == 0:
                self.open_opening[k] = opening[k]
            else:
                rate = max(1.0 / (self.n_open[k] + 1), 0.02)
                self.open_opening[k] += rate * (opening[k] - self.open_opening[k])
            self.n_open[k] += 1

    def opening_reference(self) -> np.ndarray:
        ref = self.open_opening.copy()
        ref[~np.isfinite(ref)] = DEFAULT_OPEN_OPENING
        return ref


class EyeStage:
    """Eye state, ELAM, gaze, openness and events for every track of one stream."""

    def __init__(self, options: EyeOptions | None = None, backend: BackendName = "cpu") -> None:
        self.options = options or EyeOptions()
        self.engine = None
        if self.options.enabled:
            from facetrack.engines.eye_state import DEFAULT_ENGINE, EyeStateEngine

            path = self.options.engine or DEFAULT_ENGINE
            if self.options.engine is None and not Path(path).is_file():
                log.warning("no eye-state engine at %s: eyes from landmarks only", path)
            else:
                self.engine = EyeStateEngine(path, backend=backend)
        self._tracks: dict[int, _TrackEyes] = {}

    def forget(self, track_ids: list[int]) -> list[EyeEvent]:
        """Drop ended tracks; returns the events their open closures end with."""
        out = []
        for t in track_ids:
            te = self._tracks.pop(t, None)
            if te is not None:
                out += [EyeEvent(track_id=t, kind=e.kind, start_frame=e.start_frame, end_frame=e.end_frame)
                        for e in te.blinks.flush()]
        return out

    def _track(self, track_id: int) -> _TrackEyes:
        te = self._tracks.get(track_id)
        if te is None:
            te = self._tracks[track_id] = _TrackEyes(BlinkDetector(self.options.blink_overlap))
        return te

    def measure(self, image: np.ndarray, face: FaceResult) -> EyeMeasure:
        """Step 1: P(closed) per eye, the verdict and ELAM; replaces face.landmarks with the corrected ones."""
        te = self._track(face.track_id)
        lm = np.asarray(face.landmarks)
        raw = E.relative_openings(lm)
        if self.engine is None:
            te.calibrate(raw, np.full(2, np.nan), self.options)
            return EyeMeasure(np.full(2, np.nan), te.opening_reference())
        crops = E.cut_eye_crops(image, lm, self.engine.input_size, self.engine.crop_scale, self.engine.crop_y_shift)
        quality = eye_quality(self.options, lm, (image.shape[1], image.shape[0]))
        verdict = decide(self.options, self.engine.predict(crops), quality,
                         raw / te.opening_reference())
        te.calibrate(raw, verdict.p_closed, self.options)
        ref = te.opening_reference()
        if self.options.elam:
            # a closed eye's lids close; one that is not seen closes as far as the seen one
            p = np.where(np.isfinite(verdict.p_closed), verdict.p_closed, np.nanmax(verdict.p_closed, initial=0.5))
            face.landmarks, _ = E.elam_correct(lm, np.where(verdict.closed, p, np.nan), ref,
                                               self.options.closed_threshold)
        return EyeMeasure(verdict.p_closed, ref, verdict)

    def reconcile(self, fit: FitResult, m: EyeMeasure) -> None:
        """Step 3b: the fitted model's eyeBlink weights on the verdict's side, through its own expression weights
        (so the mesh closes a closed eye's lids); updates fit.expression and fit.blendshapes."""
        if m.verdict is None:
            return
        amap = np.asarray(fit.model.arkit_map, np.float64)
        expression = np.asarray(fit.expression, np.float64).copy()
        current = np.asarray(fit.blendshapes, np.float64)[BLINK]
        target = blink_weight(self.options, current, m.verdict)
        for k, index in enumerate(BLINK):
            row = amap[index]
            j = int(row.argmax()) if row.size else -1
            if j >= 0 and row[j] > 0 and target[k] != current[k]:
                expression[j] = np.clip(expression[j] + (target[k] - current[k]) / row[j], 0.0, 1.0)
        blendshapes = np.clip(amap @ expression, 0.0, 1.0)
        blendshapes[BLINK] = target
        fit.expression = expression.astype(np.float32)
        fit.blendshapes = blendshapes.astype(np.float32)

    def gaze(self, face: FaceResult, m: EyeMeasure) -> None:
        """Step 4: eyeLook* from the irises; a closed eye keeps its last gaze (its iris is not seen)."""
        if not self.options.gaze or face.blendshapes is None:
            return
        eye_look(face, m.p_closed, self._track(face.track_id).gaze, self.options)

    def finish(self, face: FaceResult, m: EyeMeasure, frame_index: int) -> list[EyeEvent]:
        """Step 6: the face's eye state, mouth openness and the eye events that ended on this frame."""
        te = self._track(face.track_id)
        lm = np.asarray(face.landmarks)
        opening = E.relative_openings(lm)
        openness = np.clip(opening / m.open_opening, 0.0, 1.0)
        verdict = m.verdict or decide(self.options, m.p_closed, np.zeros(2), openness, face.blendshapes)
        if face.blendshapes is not None and m.verdict is not None:  # the filter may have moved them: hold them
            weights = np.array(face.blendshapes, np.float32, copy=True)
            weights[BLINK] = blink_weight(self.options, weights[BLINK], verdict)
            face.blendshapes = weights
        face.eyes = Eyes.model_construct(left=self._eye_state(verdict, openness, 0),
                                         right=self._eye_state(verdict, openness, 1))
        face.mouth_openness = E.mouth_openness(lm)
        closed = (bool(verdict.closed[0]), bool(verdict.closed[1]))
        return [EyeEvent(track_id=face.track_id, kind=e.kind, start_frame=e.start_frame, end_frame=e.end_frame)
                for e in te.blinks.update(frame_index, closed)]

    def _eye_state(self, verdict: EyeVerdict, openness: np.ndarray, k: int) -> EyeState:
        p = verdict.p_closed[k]
        engine = self.engine is not None
        return EyeState.model_construct(
            p_closed=float(p) if np.isfinite(p) else None, openness=float(openness[k]), closed=bool(verdict.closed[k]),
            visible=bool(verdict.visible[k]) if engine else None, quality=float(verdict.quality[k]) if engine else None,
        )
