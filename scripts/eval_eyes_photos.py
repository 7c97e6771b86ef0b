"""Eye verdicts on labelled photos and clips, as a user gets them: `facetrack run FOLDER --out x.jsonl`.

    python scripts/eval_eyes_photos.py [--media ../shared/media] [--labels labels] [--work /tmp/eval_eyes_photos]

Photos (`eye_state/cew_closed_faces`: both eyes closed; `eye_state/utkface_open_unverified`: eyes
presumably open, not verified) are tracked by the real command into JSON lines; per folder it prints
the photos, those with a face, and per eye of the largest face:

- closed-photo recall: eyes with eyeBlink >= 0.5 among the closed photos' eyes (of the photos with a
  face; "of all photos" counts a photo without a face as two missed eyes);
- open-photo false-closed: eyes with eyeBlink >= 0.5 among the open photos' eyes;
- agreement: eyes whose `p_closed >= 0.5` matches `eyeBlink >= 0.5` (eyes with a P(closed));
- the same on the eye-state engine's held-back split only (30% of each face folder by a hash of the
  path, training/eye_data.py): the rest was trained on, so its figures flatter the engine.

Clips (labels/clips.csv): frame F1 of eyeBlink >= 0.5 against the labels (as scripts/eval_eyes_video.py),
agreement as above, and winks: frames where the verdict closes exactly one eye, and how many of them keep
the other eye's eyeBlink below 0.5.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.pipeline import Tracker
from facetrack.training.eye_data import is_held

BL, BR = ARKIT_BLENDSHAPES.index("eyeBlinkLeft"), ARKIT_BLENDSHAPES.index("eyeBlinkRight")
FOLDERS = (("cew_closed_faces", True), ("utkface_open_unverified", False))
HELD_FRACTION = 0.3


def run_folder(folder: Path, out: Path) -> list[dict]:
    """The folder through the real command; the frame records of its JSON lines."""
    subprocess.run([sys.executable, "-m", "facetrack.tracker.cli", "run", str(folder), "--out", str(out), "--quiet"],
                   check=True, capture_output=True)
    records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("schema") == "facetrack.frame/1"]


def eyes_of(face: dict) -> list[tuple[float | None, float, bool]]:
    """(p_closed, eyeBlink, closed verdict) of the left and right eye."""
    out = []
    for side, index in (("left", BL), ("right", BR)):
        eye = face["eyes"][side]
        out.append((eye["p_closed"], face["blendshapes"][index], bool(eye.get("closed"))))
    return out


def score_photos(records: list[dict], closed: bool, folder: str, held_only: bool) -> dict:
    photos = faces = hits = total = agree = with_p = 0
    for record in records:
        if held_only and not is_held(f"{folder}/{record['source']}", HELD_FRACTION):
            continue
        photos += 1
        if not record["faces"]:
            continue
        faces += 1
        face = max(record["faces"], key=lambda f: (f["bbox"][2] - f["bbox"][0]) * (f["bbox"][3] - f["bbox"][1]))
        for p, weight, _ in eyes_of(face):
            total += 1
            hits += weight >= 0.5
            if p is not None:
                with_p += 1
                agree += (p >= 0.5) == (weight >= 0.5)
    rate = hits / max(total, 1)
    key = "recall" if closed else "false_closed"
    result = {"photos": photos, "faces": faces, "eyes": total, key: rate, "agreement": agree / max(with_p, 1),
              "eyes_with_p": with_p}
    if closed:
        result["recall_of_all_photos"] = hits / max(2 * photos, 1)
    return result


def score_clips(media: Path, labels_dir: Path) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from eval_eyes_video import frame_scores, read_labels

    tp = fp = fn = 0
    agree = with_p = one_eyed = one_eyed_kept = 0
    with open(labels_dir / "clips.csv") as f:
        clips = list(csv.DictReader(f))
    for clip in clips:
        labels = read_labels(labels_dir / clip["labels"])
        pred = {}
        for result in Tracker(TrackerConfig()).track(media / clip["video"]):
            if not result.faces:
                continue
            face = max(result.faces, key=lambda x: x.bbox[2] - x.bbox[0])
            weights = face.blendshapes[[BL, BR]]
            pred[result.frame_index] = (bool(weights[0] >= 0.5), bool(weights[1] >= 0.5))
            verdict = (face.eyes.left.closed, face.eyes.right.closed)
            for eye, weight in zip((face.eyes.left, face.eyes.right), weights, strict=True):
                if eye.p_closed is not None:
                    with_p += 1
                    agree += (eye.p_closed >= 0.5) == (weight >= 0.5)
            if verdict[0] != verdict[1]:
                one_eyed += 1
                open_eye = 1 if verdict[0] else 0
                one_eyed_kept += bool(weights[open_eye] < 0.5)
        fs = frame_scores(labels, pred)
        tp, fp, fn = tp + fs["tp"], fp + fs["fp"], fn + fs["fn"]
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {"clips": len(clips), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / max(precision + recall, 1e-9), "agreement": agree / max(with_p, 1),
            "eyes_with_p": with_p, "one_eyed_frames": one_eyed, "one_eyed_kept": one_eyed_kept}


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--media", type=Path, default=root.parent / "shared" / "media")
    ap.add_argument("--labels", type=Path, default=root / "labels")
    ap.add_argument("--work", type=Path, default=Path("/tmp") / "eval_eyes_photos")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    report: dict = {}
    for folder, closed in FOLDERS:
        records = run_folder(args.media / "eye_state" / folder, args.work / f"{folder}.jsonl")
        report[folder] = {"all": score_photos(records, closed, folder, False),
                          "held_back": score_photos(records, closed, folder, True)}
    report["clips"] = score_clips(args.media, args.labels)
    print(json.dumps(report, indent=1))
    lines = ["| data | photos (with a face) | eyes | closed recall / open false-closed | agreement P >= 0.5 vs "
             "eyeBlink >= 0.5 |", "|---|---|---|---|---|"]
    for folder, closed in FOLDERS:
        for part in ("all", "held_back"):
            r = report[folder][part]
            rate = (f"recall {r['recall']:.4f} (of all photos {r['recall_of_all_photos']:.4f})" if closed
                    else f"false-closed {r['false_closed']:.4f}")
            lines.append(f"| {folder} ({part}) | {r['photos']} ({r['faces']}) | {r['eyes']} | {rate} | "
                         f"{r['agreement']:.4f} |")
    c = report["clips"]
    lines.append(f"| labelled clips ({c['clips']}) | frame F1 {c['f1']:.3f} (precision {c['precision']:.3f}, recall "
                 f"{c['recall']:.3f}) | {c['eyes_with_p']} | winks: {c['one_eyed_kept']}/{c['one_eyed_frames']} "
                 f"one-eyed frames keep the open eye below 0.5 | {c['agreement']:.4f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
