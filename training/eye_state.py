"""Train the eye-state engine: a small CNN giving P(closed) for an aligned grey eye crop.

`train_eye_state` trains on the training part of an `EyeSet` (training/eye_data.py),
reports accuracy and confusion matrices on the held-back part, and `export_onnx` writes
the engine file plus its metadata (facetrack.engines.onnx_runtime reads both).

Networks: `tiny` (default, ~60k parameters, ~0.1 ms for both eyes on one CPU thread)
and `resnet50` (the paper's, from `facetrack.training.backbones`, for experiments only).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetrack.tracker.stages.eyes import CROP_SCALE, CROP_SIZE, CROP_Y_SHIFT
from facetrack.training.export import attach_metadata, export_batched
from facetrack.training.eye_data import EyeSet, augment

log = logging.getLogger("facetrack.training")

MEAN, STD = 0.5, 0.25
"""Input normalisation: (grey / 255 - MEAN) / STD."""
ENGINE_VERSION = "1.0.0"


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("training needs PyTorch: pip install 'facetrack[train]' (torch==2.13.0, CPU build)") from exc
    return torch


def build_network(arch: str = "tiny", width: int = 16):
    """The eye-state network: (N, 1, H, W) normalised grey -> (N,) closed logit."""
    torch = _torch()
    nn = torch.nn

    def block(cin: int, cout: int, pool: bool) -> list:
        layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        return layers + ([nn.MaxPool2d(2)] if pool else [])

    if arch == "tiny":
        w = width
        return nn.Sequential(
            *block(1, w, True), *block(w, 2 * w, True), *block(2 * w, 4 * w, True), *block(4 * w, 4 * w, False),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * w, 1), nn.Flatten(0),
        )
    if arch == "resnet50":
        return _resnet50()
    raise ValueError(f"unknown network {arch!r} (tiny, resnet50)")


def _resnet50():
    """The paper's ResNet-50 on grey eye crops: one logit of P(closed)."""
    from facetrack.training.backbones import resnet50

    nn = _torch().nn
    features, width = resnet50(in_channels=1, small_input=True)
    return nn.Sequential(features, nn.Linear(width, 1), nn.Flatten(0))


def normalise(crops: np.ndarray) -> np.ndarray:
    """(N, H, W) uint8 -> (N, 1, H, W) float32 network input."""
    return ((crops.astype(np.float32) / 255.0 - MEAN) / STD)[:, None]


@dataclass
class TrainConfig:
    arch: str = "tiny"
    width: int = 12
    epochs: int = 60
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    max_seconds: float | None = None


@dataclass
class EvalReport:
    """Accuracy and confusion matrices ([[open->open, open->closed], [closed->open, closed->closed]]) per part."""

    parts: dict[str, dict] = field(default_factory=dict)

    def add(self, name: str, labels: np.ndarray, p: np.ndarray) -> None:
        pred = (p >= 0.5).astype(int)
        cm = np.zeros((2, 2), int)
        np.add.at(cm, (labels.astype(int), pred), 1)
        self.parts[name] = {"n": int(len(labels)), "accuracy": float((pred == labels).mean()) if len(labels) else
                            float("nan"), "confusion": cm.tolist()}

    def to_dict(self) -> dict:
        return self.parts


def evaluate(predict, data: EyeSet) -> EvalReport:
    """Held-back accuracy: all of it, and per source (a source with one label gives its recall)."""
    rep = EvalReport()
    held = data.subset(data.held)
    if len(held.labels):
        p = predict(held.crops)
        rep.add("held_all", held.labels, p)
        for s in sorted(set(held.source.tolist())):
            m = held.source == s
            rep.add(f"held:{s}", held.labels[m], p[m])
    return rep


def train_eye_state(data: EyeSet, config: TrainConfig | None = None, progress=None):
    """Train on data's non-held crops; returns (model, history)."""
    cfg = config or TrainConfig()
    torch = _torch()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    train = data.subset(~data.held)
    if len(train.labels) == 0 or len(set(train.labels.tolist())) < 2:
        raise ValueError("the training split needs both open and closed crops")
    model = build_network(cfg.arch, cfg.width)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, cfg.epochs * int(np.ceil(len(train.labels) / cfg.batch_size)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
    # balance the classes and the sources: each sample weighted by 1 / (its label-source group size)
    groups = np.char.add(train.source.astype(str), train.labels.astype(str))
    _, inv, counts = np.unique(groups, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inv]
    weights /= weights.sum()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    history = []
    t0 = time.time()
    n_batches = int(np.ceil(len(train.labels) / cfg.batch_size))
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        idx = rng.choice(len(train.labels), size=n_batches * cfg.batch_size, replace=True, p=weights)
        total = 0.0
        for b in range(n_batches):
            sel = idx[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x = torch.from_numpy(normalise(np.stack([augment(train.crops[i], rng) for i in sel])))
            y = torch.from_numpy(train.labels[sel].astype(np.float32))
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            if step < steps - 1:
                sched.step()
            step += 1
            total += loss.item()
        history.append({"epoch": epoch + 1, "loss": total / n_batches, "seconds": time.time() - t0})
        if progress is not None:
            progress(history[-1])
        if cfg.max_seconds is not None and time.time() - t0 > cfg.max_seconds:
            log.warning("stopping after %d epochs: time limit", epoch + 1)
            break
    model.eval()
    return model, history


def export_onnx(model, path: Path, metadata: dict | None = None) -> Path:
    """Write the engine: ONNX (input `crops` (N, 1, H, W) float32, output `p_closed` (N,)) + metadata.

    The metadata (input size, normalisation, crop geometry, version, metrics...) goes into the
    ONNX file's metadata_props and, with the file's sha256, into a sidecar `<name>.json`.
    """
    torch = _torch()


    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    class WithSigmoid(torch.nn.Module):
        def __init__(self, net) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.sigmoid(self.net(x))

    wrapped = WithSigmoid(model).eval()
    w, h = CROP_SIZE
    dummy = torch.zeros(2, 1, h, w)
    export_batched(wrapped, dummy, path, ["p_closed"])
    model.eval()  # the exporter restores the wrapper's mode, which may leave the network in training mode
    meta = {
        "engine": "eye_state",
        "version": ENGINE_VERSION,
        "input": "crops",
        "input_layout": "NCHW grey",
        "input_size": [w, h],
        "normalisation": {"mean": MEAN, "std": STD, "scale": 1 / 255},
        "output": "p_closed",
        "output_layout": "(N,) probability the eye is closed",
        "crop": {"scale": CROP_SCALE, "y_shift": CROP_Y_SHIFT, "mirror": "left eye mirrored to look like a right eye"},
    }
    meta.update(metadata or {})
    return attach_metadata(path, meta)
