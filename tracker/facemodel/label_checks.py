"""Checks of ARKit weights against expression labels made by eye (the rules of the labels' README).

A label row grades eight expressions per frame: 0 absent, 1 unsure (never checked), 2 clear.
A 0 means the matching weights stay low, a 2 that the largest of them is high enough; a
frame whose labels are all 0 is a neutral face, on which no weight outside `eye*` and
`mouthClose` exceeds 0.3. Antagonistic pairs (smile and frown on one side, ...) should
never both exceed 0.3 on any frame. Pure functions: the measurement script and the tests
feed them label rows and weight vectors.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES

LABELS = ("jaw", "smileL", "smileR", "pucker", "frown", "chin", "browUp", "browDown")

GROUPS: dict[str, tuple[str, ...]] = {
    "jaw": ("jawOpen",),
    "smileL": ("mouthSmileLeft",),
    "smileR": ("mouthSmileRight",),
    "pucker": ("mouthPucker", "mouthFunnel"),
    "frown": ("mouthFrownLeft", "mouthFrownRight"),
    "chin": ("mouthShrugLower",),
    "browUp": ("browInnerUp", "browOuterUpLeft", "browOuterUpRight"),
    "browDown": ("browDownLeft", "browDownRight"),
}
"""The ARKit weights each label speaks for (the larger of a group counts)."""

ABSENT_MAX = {"jaw": 0.2, "smileL": 0.25, "smileR": 0.25, "pucker": 0.25, "frown": 0.25,
              "chin": 0.3, "browUp": 0.3, "browDown": 0.3}
"""A label 0 passes when every weight of its group is at most this."""

CLEAR_MIN = {"jaw": 0.35, "smileL": 0.35, "smileR": 0.35, "pucker": 0.35, "frown": 0.3,
             "chin": 0.3, "browUp": 0.3, "browDown": 0.3}
"""A label 2 passes when the largest weight of its group is at least this."""

NEUTRAL_MAX = 0.3
ANTAGONIST_MAX = 0.3

ANTAGONISTIC_PAIRS: tuple[tuple[str, str], ...] = (
    ("jawLeft", "jawRight"),
    ("mouthLeft", "mouthRight"),
    ("mouthSmileLeft", "mouthFrownLeft"),
    ("mouthSmileRight", "mouthFrownRight"),
    ("mouthPucker", "mouthSmileLeft"),
    ("mouthPucker", "mouthSmileRight"),
    ("mouthPucker", "mouthStretchLeft"),
    ("mouthPucker", "mouthStretchRight"),
    ("browDownLeft", "browOuterUpLeft"),
    ("browDownRight", "browOuterUpRight"),
    ("eyeWideLeft", "eyeSquintLeft"),
    ("eyeWideRight", "eyeSquintRight"),
)
"""Shapes a face cannot make at once; both above 0.3 on one frame is a failure."""

_IDX = {n: i for i, n in enumerate(ARKIT_BLENDSHAPES)}
_NEUTRAL_SKIP = np.array([n.startswith("eye") or n == "mouthClose" for n in ARKIT_BLENDSHAPES])
_PAIR_A = np.array([_IDX[a] for a, _ in ANTAGONISTIC_PAIRS])
_PAIR_B = np.array([_IDX[b] for _, b in ANTAGONISTIC_PAIRS])


@dataclass(frozen=True)
class LabelRow:
    """One labelled frame: `clip` relative to the media folder, `frame` 0-based decoded index."""

    id: str
    clip: str
    frame: int
    grades: dict[str, int]

    @property
    def neutral(self) -> bool:
        return all(self.grades[k] == 0 for k in LABELS)


@dataclass
class Verdict:
    """The checks of one labelled frame: (label, weight name, value, passed) per check."""

    row: LabelRow
    clear: list[tuple[str, str, float, bool]] = field(default_factory=list)
    absent: list[tuple[str, str, float, bool]] = field(default_factory=list)
    neutral: tuple[str, float, bool] | None = None  # the largest non-eye weight on a neutral face

    def failures(self) -> list[str]:
        out = [f"{lab}=2 but {name}={v:.2f}" for lab, name, v, ok in self.clear if not ok]
        out += [f"{lab}=0 but {name}={v:.2f}" for lab, name, v, ok in self.absent if not ok]
        if self.neutral is not None and not self.neutral[2]:
            out.append(f"neutral but {self.neutral[0]}={self.neutral[1]:.2f}")
        return out


def read_labels(path: str | Path) -> list[LabelRow]:
    """Label rows from a CSV with columns id, clip, frame and the eight grades."""
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"id", "clip", "frame", *LABELS} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}; "
                             f"expected id, clip, frame, {', '.join(LABELS)}")
        for r in reader:
            grades = {k: int(r[k]) for k in LABELS}
            bad = [k for k, v in grades.items() if v not in (0, 1, 2)]
            if bad:
                raise ValueError(f"{path}: row {r['id']} grades {bad} outside 0/1/2")
            rows.append(LabelRow(r["id"], r["clip"], int(r["frame"]), grades))
    return rows


def check_frame(row: LabelRow, weights: np.ndarray) -> Verdict:
    """Apply the README's rules to one frame's 52 ARKit weights."""
    w = np.asarray(weights, np.float32)  # thresholds compared in float32, the weights' own precision
    v = Verdict(row)
    for lab in LABELS:
        g = row.grades[lab]
        names = GROUPS[lab]
        vals = [float(w[_IDX[n]]) for n in names]
        k = int(np.argmax(vals))
        if g == 2:
            v.clear.append((lab, names[k], vals[k], bool(np.float32(vals[k]) >= np.float32(CLEAR_MIN[lab]))))
        elif g == 0:
            v.absent.append((lab, names[k], vals[k], bool(np.float32(vals[k]) <= np.float32(ABSENT_MAX[lab]))))
    if row.neutral:
        masked = np.where(_NEUTRAL_SKIP, -np.inf, w)
        k = int(np.argmax(masked))
        v.neutral = (ARKIT_BLENDSHAPES[k], float(w[k]), bool(w[k] <= np.float32(NEUTRAL_MAX)))
    return v


def antagonistic(weights: np.ndarray) -> np.ndarray:
    """Per frame (weights (..., 52)): True where some antagonistic pair is both above 0.3."""
    w = np.asarray(weights, np.float32)
    return ((w[..., _PAIR_A] > np.float32(ANTAGONIST_MAX)) & (w[..., _PAIR_B] > np.float32(ANTAGONIST_MAX))).any(-1)


@dataclass
class Summary:
    """Counts over many frames, as the measurement prints them."""

    clear_found: int = 0
    clear_total: int = 0
    absent_low: int = 0
    absent_total: int = 0
    neutral_ok: int = 0
    neutral_total: int = 0
    antagonistic_frames: int = 0
    frames: int = 0
    failures: dict[str, list[str]] = field(default_factory=dict)
    by_label: dict[str, list[int]] = field(default_factory=lambda: {k: [0, 0, 0, 0] for k in LABELS})
    """Per label: clear found, clear checked, absent kept low, absent checked (where the misses are)."""

    def add(self, verdict: Verdict) -> None:
        self.clear_total += len(verdict.clear)
        self.clear_found += sum(ok for *_, ok in verdict.clear)
        self.absent_total += len(verdict.absent)
        self.absent_low += sum(ok for *_, ok in verdict.absent)
        for checks, col in ((verdict.clear, 0), (verdict.absent, 2)):
            for lab, _, _, ok in checks:
                self.by_label[lab][col] += ok
                self.by_label[lab][col + 1] += 1
        if verdict.neutral is not None:
            self.neutral_total += 1
            self.neutral_ok += verdict.neutral[2]
        fails = verdict.failures()
        if fails:
            self.failures[verdict.row.id] = fails

    def add_clip(self, weights: np.ndarray) -> None:
        """Every frame of one clip (frames, 52), for the antagonistic-pair rate."""
        flags = antagonistic(weights)
        self.antagonistic_frames += int(flags.sum())
        self.frames += len(flags)

    def lines(self) -> list[str]:
        def pct(a: int, b: int) -> str:
            return f"{a}/{b} ({100 * a / b:.1f}%)" if b else f"{a}/{b}"

        return [
            f"clear expressions found: {pct(self.clear_found, self.clear_total)}",
            f"absent ones kept low:    {pct(self.absent_low, self.absent_total)}",
            f"neutral faces neutral:   {pct(self.neutral_ok, self.neutral_total)}",
            f"antagonistic pairs:      {pct(self.antagonistic_frames, self.frames)} of frames",
        ]

    def label_lines(self) -> list[str]:
        """The clear and absent counts of each label, one line each."""
        return [f"  {lab:<9} clear {c[0]:>3}/{c[1]:<3} absent {c[2]:>3}/{c[3]}" for lab, c in self.by_label.items()]
