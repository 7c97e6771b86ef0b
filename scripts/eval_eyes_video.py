"""Closed-eye frames and blink events on labelled clips: facetrack vs landmark-only baselines.

    python scripts/eval_eyes_video.py [--labels labels] [--media ../shared/media] [--out docs/eyes]

For every label file in labels/clips.csv (format in labels/README.md) the clip is tracked
once by the landmark engine (landmarks recorded, then replayed), and three methods are scored:

- `ear`: the eye-aspect-ratio baseline on the raw landmarks: closed when EAR < 0.6 x the
  clip's median EAR (an open-eye reference known only offline; a sweep of the factor is
  reported too: its best F1 on these clips is within a point of 0.6's);
- `fit`: the face-model fit of the raw landmarks alone, eyeBlink >= 0.5 (no eye-state engine,
  no ELAM, no dynamics; same temporal filter);
- `p`: the eye-state engine alone, P(closed) >= 0.5;
- `facetrack`: the full pipeline (eye-state engine, ELAM, online LDL, filter), eyeBlink >= 0.5.

Frame scores: precision, recall and F1 of closed, pooled over both eyes (label -1 ignored).
Events: runs of frames with either eye closed (ignored frames may join two runs); a labelled
event is found when a predicted run overlaps it within 2 frames; a predicted run is false
when it overlaps no labelled event (within 2 frames) and is not inside ignored frames.
Writes results.json, results.md and one plot per clip (eyeBlink curves, labels underneath).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from facetrack.engines.base import DetectedFace
from facetrack.engines.landmarks import make_landmark_engine
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.pipeline import Tracker
from facetrack.tracker.stages import eyes as E
from facetrack.tracker.stages.eye_options import EyeOptions

BL, BR = ARKIT_BLENDSHAPES.index("eyeBlinkLeft"), ARKIT_BLENDSHAPES.index("eyeBlinkRight")
TOLERANCE = 2
EAR_FACTOR = 0.6


class Recorder:
    """Wraps a landmark engine and records what it found per frame."""

    name = "recorder"

    def __init__(self, inner) -> None:
        self.inner, self.frames = inner, []

    def process(self, image):
        faces = self.inner.process(image)
        self.frames.append(faces)
        return faces

    def close(self) -> None:
        self.inner.close()


class Replay:
    """Plays recorded landmarks back (same frames, no landmark engine cost)."""

    name = "replay"

    def __init__(self, frames: list[list[DetectedFace]]) -> None:
        self.frames, self.i = frames, 0

    def process(self, image):
        faces = self.frames[self.i]
        self.i += 1
        return faces

    def close(self) -> None:
        """Nothing to release: the recorded faces live in memory."""


def read_labels(path: Path) -> dict[int, tuple[int, int]]:
    with open(path) as f:
        return {int(r["frame"]): (int(r["left_closed"]), int(r["right_closed"])) for r in csv.DictReader(f)}


def track(video: Path, engine_factory, eyes: EyeOptions) -> dict[int, dict]:
    out = {}
    tracker = Tracker(TrackerConfig(eyes=eyes), engine_factory=engine_factory)
    for r in tracker.track(video):
        if not r.faces:
            continue
        f = max(r.faces, key=lambda x: (x.bbox[2] - x.bbox[0]))
        out[r.frame_index] = {
            "blink": None if f.blendshapes is None else (float(f.blendshapes[BL]), float(f.blendshapes[BR])),
            "p": None if f.eyes is None else (f.eyes.left.p_closed, f.eyes.right.p_closed),
            "ear": tuple(E.eye_aspect_ratio(f.landmarks).tolist()),
            "events": [e.model_dump() for e in (r.eye_events or [])],
        }
    return out


def frame_scores(labels: dict[int, tuple[int, int]], pred: dict[int, tuple[bool, bool]]) -> dict:
    tp = fp = fn = tn = 0
    for i, lab in labels.items():
        for k in range(2):
            if lab[k] < 0:
                continue
            p = pred.get(i, (False, False))[k]
            tp += lab[k] == 1 and p
            fn += lab[k] == 1 and not p
            fp += lab[k] == 0 and p
            tn += lab[k] == 0 and not p
    prec = tp / (tp + fp) if tp + fp else 1.0
    rec = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": prec, "recall": rec, "f1": f1}


def runs(flags: dict[int, int]) -> list[tuple[int, int]]:
    """Runs of frames with flag 1; flag -1 frames join runs but never start or end one."""
    out, start, last = [], None, None
    for i in sorted(flags):
        v = flags[i]
        if v == 1:
            if start is None:
                start = i
            last = i
        elif v == 0 and start is not None:
            out.append((start, last))
            start = None
    if start is not None:
        out.append((start, last))
    return out


def event_scores(labels: dict[int, tuple[int, int]], pred: dict[int, tuple[bool, bool]]) -> dict:
    lab_flag = {i: 1 if 1 in lab else (-1 if -1 in lab else 0) for i, lab in labels.items()}
    pred_flag = {i: int(any(pred.get(i, (False, False)))) for i in labels}
    truth, found = runs(lab_flag), runs(pred_flag)
    hit = [any(ps <= te + TOLERANCE and pe >= ts - TOLERANCE for ps, pe in found) for ts, te in truth]
    false = []
    for ps, pe in found:
        if any(ps <= te + TOLERANCE and pe >= ts - TOLERANCE for ts, te in truth):
            continue
        if all(lab_flag.get(i, -1) == -1 for i in range(ps, pe + 1)):
            continue
        false.append((ps, pe))
    return {"events": len(truth), "found": int(sum(hit)), "missed": [t for t, h in zip(truth, hit) if not h],
            "false": false, "recall": sum(hit) / len(truth) if truth else 1.0}


def predictions(track_out: dict[int, dict], method: str,
                ear_factor: float = EAR_FACTOR) -> dict[int, tuple[bool, bool]]:
    if method == "ear":
        ears = np.array([v["ear"] for v in track_out.values()])
        ref = np.median(ears, axis=0)
        return {i: (v["ear"][0] < ear_factor * ref[0], v["ear"][1] < ear_factor * ref[1]) for i, v in track_out.items()}
    if method == "p":
        return {i: (v["p"][0] >= 0.5, v["p"][1] >= 0.5) for i, v in track_out.items() if v["p"] is not None}
    return {i: (v["blink"][0] >= 0.5, v["blink"][1] >= 0.5) for i, v in track_out.items() if v["blink"] is not None}


def plot(name: str, labels, runs_by_method: dict[str, dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = sorted(labels)
    fig, axes = plt.subplots(3, 1, figsize=(11, 4.6), sharex=True, gridspec_kw={"height_ratios": [3, 3, 1]})
    for ax, k, side in ((axes[0], 0, "Left"), (axes[1], 1, "Right")):
        full, fit = runs_by_method["facetrack"], runs_by_method["fit"]
        xs = [i for i in frames if i in full]
        ax.plot(xs, [full[i]["blink"][k] for i in xs], color="C0", lw=1.6, label=f"eyeBlink{side} (facetrack)")
        ax.plot(xs, [fit[i]["blink"][k] for i in xs if i in fit], color="C1", lw=1, alpha=0.8,
                label=f"eyeBlink{side} (fit of raw landmarks)")
        ax.plot(xs, [full[i]["p"][k] for i in xs], color="C2", lw=0.8, ls=":", label="P(closed)")
        ears = np.array([runs_by_method["ear"][i]["ear"][k] for i in xs])
        ax.plot(xs, 1 - ears / np.median(ears), color="C3", lw=0.8, alpha=0.7, label="1 - EAR/median EAR")
        ax.axhline(0.5, color="grey", lw=0.5, ls="--")
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel(side)
        ax.legend(loc="upper right", fontsize=6, ncol=4)
    lab = np.array([[labels[i][0], labels[i][1]] for i in frames]).T
    cmap = matplotlib.colors.ListedColormap(["#dddddd", "#ffffff", "#222222"])
    axes[2].imshow(lab + 1, aspect="auto", cmap=cmap, vmin=0, vmax=2, interpolation="nearest",
                   extent=(frames[0] - 0.5, frames[-1] + 0.5, 1.5, -0.5))
    axes[2].set_yticks([0, 1], ["L", "R"])
    axes[2].set_xlabel("frame (labels: black closed, white open, grey ignored)")
    fig.suptitle(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = Path(__file__).resolve().parents[1]
    ap.add_argument("--labels", type=Path, default=root / "labels")
    ap.add_argument("--media", type=Path, default=root.parent / "shared" / "media")
    ap.add_argument("--out", type=Path, default=root / "docs" / "eyes")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    methods = ("ear", "fit", "p", "facetrack")
    results: dict = {"clips": {}, "pooled": {}}
    pooled_frames = {m: [] for m in methods}
    sweep = {f: [] for f in (0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75)}
    with open(args.labels / "clips.csv") as f:
        clips = list(csv.DictReader(f))
    for clip in clips:
        name = Path(clip["labels"]).stem
        labels = read_labels(args.labels / clip["labels"])
        video = args.media / clip["video"]
        t0 = time.time()
        recorder: list[Recorder] = []

        # track() runs the clip to the end before returning, so the engine factories below are called
        # within this iteration; the default arguments bind this clip's recorder/recording explicitly.
        def record(config, still, recorder=recorder):
            recorder.append(Recorder(make_landmark_engine(config, still)))
            return recorder[-1]

        raw = track(video, record, EyeOptions(enabled=False))
        recorded = recorder[0].frames
        for i, faces in enumerate(recorded):  # EAR on the landmarks exactly as detected
            if faces and i in raw:
                big = max(faces, key=lambda x: np.ptp(x.landmarks[:, 0]))
                raw[i]["ear"] = tuple(E.eye_aspect_ratio(big.landmarks).tolist())
        last = max(labels)
        fit = raw
        full = track(video, lambda c, s, recorded=recorded: Replay(recorded), EyeOptions())
        by_method = {"ear": raw, "fit": fit, "p": full, "facetrack": full}
        clip_res = {}
        for m in methods:
            pred = predictions(by_method[m], m)
            fs = frame_scores(labels, pred)
            ev = event_scores(labels, pred)
            clip_res[m] = {"frames": fs, "events": ev}
            pooled_frames[m].append((fs, ev))
        results["clips"][name] = clip_res
        for fac in sweep:
            pred = predictions(raw, "ear", fac)
            sweep[fac].append((frame_scores(labels, pred), event_scores(labels, pred)))
        plot(name, {i: lab for i, lab in labels.items() if i <= last}, by_method, args.out / f"{name}.png")
        print(f"{name}: {time.time() - t0:.0f} s", flush=True)
    for m in methods:
        tp = sum(fs["tp"] for fs, _ in pooled_frames[m])
        fp = sum(fs["fp"] for fs, _ in pooled_frames[m])
        fn = sum(fs["fn"] for fs, _ in pooled_frames[m])
        prec, rec = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        ev_n = sum(ev["events"] for _, ev in pooled_frames[m])
        ev_f = sum(ev["found"] for _, ev in pooled_frames[m])
        ev_false = sum(len(ev["false"]) for _, ev in pooled_frames[m])
        results["pooled"][m] = {"precision": prec, "recall": rec, "f1": 2 * prec * rec / max(prec + rec, 1e-9),
                                "events": ev_n, "found": ev_f, "false_events": ev_false}
    results["ear_threshold_sweep"] = {}
    for fac, parts in sweep.items():
        tp, fp, fn = (sum(fs[k] for fs, _ in parts) for k in ("tp", "fp", "fn"))
        prec, rec = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        results["ear_threshold_sweep"][fac] = {"precision": prec, "recall": rec,
                                               "f1": 2 * prec * rec / max(prec + rec, 1e-9),
                                               "found": sum(ev["found"] for _, ev in parts),
                                               "false_events": sum(len(ev["false"]) for _, ev in parts)}
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    lines = ["| clip | method | frame precision | frame recall | frame F1 | blinks found | false blinks |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, res in results["clips"].items():
        for m in methods:
            fs, ev = res[m]["frames"], res[m]["events"]
            lines.append(f"| {name} | {m} | {fs['precision']:.3f} | {fs['recall']:.3f} | {fs['f1']:.3f} | "
                         f"{ev['found']}/{ev['events']} | {len(ev['false'])} |")
    for m in methods:
        p = results["pooled"][m]
        lines.append(f"| **all** | **{m}** | {p['precision']:.3f} | {p['recall']:.3f} | **{p['f1']:.3f}** | "
                     f"{p['found']}/{p['events']} | {p['false_events']} |")
    lines.append("")
    lines.append("EAR threshold sweep (x clip median; pooled frame F1, blinks found, false blinks): " + ", ".join(
        f"{fac:g}: {v['f1']:.3f} {v['found']}/{ev_total} {v['false_events']}"
        for fac, v in results["ear_threshold_sweep"].items()
        for ev_total in [results["pooled"]["ear"]["events"]]))
    table = "\n".join(lines)
    (args.out / "results.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
