"""The landmark-conditioned regress engine: a small MLP from normalised landmarks to the fit's outputs.

Inputs are `landmark_features` and each face's `TrackContext` (the regress stage's own function
and class: a clip is one track in frame order, a photo a track of one frame); targets are the
fit's 52 ARKit weights and the rotvec D of its head rotation relative to the landmarks' rigid
rotation R0 (rotation = R0 @ exp(D)). The feature standardisation and the target scales are
inside the network, so the exported ONNX takes the stage's `engine_input` as it is. The shipped
engine is `MirrorEnsemble`: a few such networks (seeds), each run on the face and on its mirror
image (left/right swapped back), all answers averaged, in one graph: a face and its mirror image
get mirrored weights, and the seeds' own errors partly cancel. Data: training/regress_data.py;
the run and its held-out table: scripts/train_landmark_regressor.py.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.stages.regress_features import (
    CONTEXT_WINDOW,
    N_FEATURES,
    TrackContext,
    engine_input,
    landmark_features,
)
from facetrack.tracker.stages.regress_rest import RegressRest

OUTPUTS = {"expression": len(ARKIT_BLENDSHAPES), "rotation": 3}
"""The engine's outputs and their sizes per face (what the regress stage reads)."""


@dataclass
class FaceSet:
    """Every labelled face: inputs, targets, and what it came from."""

    features: np.ndarray  # (N, N_FEATURES) float32
    context: np.ndarray  # (N, N_FEATURES) float32: the face's TrackContext as the stage computes it
    r0: np.ndarray  # (N, 3, 3) rigid rotation from the landmarks
    expression: np.ndarray  # (N, 52) the fit's ARKit weights
    rotation: np.ndarray  # (N, 3, 3) the fit's head -> camera rotation
    residual: np.ndarray  # (N, 3) rotvec of r0^T rotation
    identity: np.ndarray  # (N,) str: the clip, or the photo file
    source: np.ndarray  # (N,) str: the labelled source (a '~m' suffix: mirrored)

    def take(self, mask: np.ndarray) -> FaceSet:
        return FaceSet(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))

    def __len__(self) -> int:
        return len(self.features)

    def inputs(self) -> np.ndarray:
        """What the engine takes for these faces (`engine_input`)."""
        return engine_input(self.features, self.context)


def assemble(labels: dict[str, dict[str, np.ndarray]]) -> FaceSet:
    """One FaceSet from `label_all`'s per-source arrays; the identity of a photo's face is its file."""
    parts = []
    for name, z in labels.items():
        if not len(z["item"]):
            continue
        features, r0 = landmark_features(z["landmarks"], z["size"], z["size"][:, 0])  # focal: the width, as run
        rotation = Rotation.from_quat(z["rotation"].astype(np.float64)).as_matrix()
        residual = Rotation.from_matrix(np.einsum("nji,njk->nik", r0, rotation)).as_rotvec()
        identity = np.array([item.split("#")[0] for item in z["item"]])
        context = track_context(features, name.startswith("clip-"))
        parts.append(FaceSet(features, context, r0, z["blendshapes"], rotation, residual.astype(np.float32), identity,
                             np.full(len(features), name)))
    return FaceSet(*(np.concatenate([getattr(p, f) for p in parts]) for f in FaceSet.__dataclass_fields__))


def track_context(features: np.ndarray, one_track: bool) -> np.ndarray:
    """Each face's context: the rows are one track in frame order (a clip), else each row its own (photos)."""
    if not one_track:
        return features.copy()
    context = TrackContext(CONTEXT_WINDOW)
    return np.concatenate([context.update([0], features[i:i + 1]) for i in range(len(features))])


def clip_identity(clip: str) -> str:
    """The identity of a clip given as 'folder/stem' (as under the media's videos/): its source's name."""
    return "clip-" + clip.replace("/", "-")


def identity_hash(identity: str) -> int:
    """A stable 32-bit number per identity (the held-out photos and the calibration's folds are drawn by it)."""
    return int(hashlib.sha1(identity.encode()).hexdigest()[:8], 16)


def held_out_mask(faces: FaceSet, held_clips: tuple[str, ...], photo_fraction: float) -> np.ndarray:
    """True for faces of held-out identities: the clips ('folder/stem'), and photos whose file hashes below
    the fraction. A held clip that matches no face is an error (a typo would silently train on it)."""
    clips = {clip_identity(c) for c in held_clips}
    missing = clips - set(faces.identity.tolist())
    if missing:
        raise ValueError(f"held-out clips not in the data: {sorted(missing)}")

    def held(identity: str) -> bool:
        if identity.startswith("clip-"):
            return identity in clips
        return identity_hash(identity) / 0xFFFFFFFF < photo_fraction

    verdicts = {i: held(i) for i in np.unique(faces.identity)}
    return np.array([verdicts[i] for i in faces.identity])


def build_network(train: FaceSet, components: int = 256, hidden: int = 256):
    """The network: the training set's feature standardisation and its first `components` principal axes (fixed,
    not trained: the 478 points move together, so a few directions carry them), applied to the face's features
    and to their difference from its track's context, then an MLP on both; the rotation output is scaled by the
    training remainders' spread. jawOpen also has a linear path from the projections: how far a jaw opens is
    nearly linear in the landmarks, and a line carries on past the widest jaws of the training people, where the
    MLP alone flattens out (cross-validated: people it never saw read their jaw more truly)."""
    import torch
    from torch import nn

    mean, std = train.features.mean(0), train.features.std(0) + 1e-4
    _, _, vt = np.linalg.svd((train.features - mean) / std, full_matrices=False)

    class LandmarkRegressor(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
            self.register_buffer("inv_std", torch.from_numpy((1 / std).astype(np.float32)))
            self.register_buffer("axes", torch.from_numpy(vt[:components].T.astype(np.float32).copy()))
            self.register_buffer("rot_scale", torch.tensor(train.residual.std(0) + 1e-4, dtype=torch.float32))
            self.head = nn.Sequential(nn.Linear(2 * components, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                      nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                      nn.Linear(hidden, sum(OUTPUTS.values())))
            self.jaw = nn.Linear(2 * components, 1)
            nn.init.zeros_(self.jaw.weight)
            nn.init.zeros_(self.jaw.bias)
            self.register_buffer("jaw_column", torch.zeros(sum(OUTPUTS.values())))
            self.jaw_column[ARKIT_BLENDSHAPES.index("jawOpen")] = 1.0

        def project(self, inputs: torch.Tensor) -> torch.Tensor:
            features, context = inputs[:, :N_FEATURES], inputs[:, N_FEATURES:]
            return torch.cat([((features - self.mean) * self.inv_std) @ self.axes,
                              ((features - context) * self.inv_std) @ self.axes], dim=1)

        def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.head(z) + self.jaw(z) * self.jaw_column
            return out[:, :OUTPUTS["expression"]], out[:, OUTPUTS["expression"]:] * self.rot_scale

        def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.split(self.project(inputs))

    return LandmarkRegressor()


def train_network(train: FaceSet, epochs: int = 60, batch: int = 256, lr: float = 2e-3, noise: float = 0.05,
                  components: int = 256, hidden: int = 256, seed: int = 0, log=print):
    """L1 on the ARKit weights and on the rotation remainder (in units of its spread). The projection is fixed,
    so it runs once; Gaussian jitter (`noise`, in standardised units) on the projections stands for the
    landmark engine's frame-to-frame noise."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # a small network on a shared machine: more threads only wait on each other
    net = build_network(train, components, hidden)
    with torch.no_grad():
        z = net.project(torch.from_numpy(train.inputs()))
    e = torch.from_numpy(train.expression.astype(np.float32))
    d = torch.from_numpy(train.residual.astype(np.float32))
    optimiser = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)  # the projection is buffers
    steps = epochs * ((len(z) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.1)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(z))
        total = 0.0
        for i in range(0, len(z), batch):
            idx = order[i:i + batch]
            pe, pd = net.split(z[idx] + noise * torch.randn(len(idx), z.shape[1]))
            loss = (pe - e[idx]).abs().mean() + ((pd - d[idx]) / net.rot_scale).abs().mean() * 0.05
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(idx)
        if epoch % 10 == 0 or epoch == epochs - 1:
            log(f"  epoch {epoch:3d}  loss {total / len(z):.4f}  {time.perf_counter() - t0:5.0f} s")
    return net.eval()


def mirror_tables() -> tuple[np.ndarray, np.ndarray]:
    """(N_FEATURES,) index and sign that turn a face's features into its mirror image's: each landmark swapped
    with its partner (the packaged model's 478-point pairing) and x negated, the face's centre x negated."""
    from facetrack.tracker.facemodel.compact import load_default_model

    pairs = np.asarray(load_default_model().extra["mirror"][:478], np.int64)
    index = np.concatenate([(3 * pairs[:, None] + np.arange(3)).reshape(-1), 3 * 478 + np.arange(3)])
    sign = np.concatenate([np.tile([-1.0, 1.0, 1.0], 478), [-1.0, 1.0, 1.0]]).astype(np.float32)
    return index, sign


def train_ensemble(train: FaceSet, seeds: tuple[int, ...] = (0, 1, 2), log=print, jaw: tuple[float, float] = (1.0, 0.0),
                   **options):
    """`MirrorEnsemble` of one network per seed (`train_network`'s options), jawOpen read as `jaw` says."""
    nets = []
    for seed in seeds:
        log(f"network {len(nets) + 1} of {len(seeds)} (seed {seed})")
        nets.append(train_network(train, seed=seed, log=log, **options))
    return mirror_ensemble(nets, jaw)


def identity_folds(faces: FaceSet, folds: int) -> np.ndarray:
    """Each face's fold, by a hash of its identity: a person (and their mirrored copies) in one fold only."""
    fold = {i: identity_hash(i) % folds for i in np.unique(faces.identity)}
    return np.array([fold[i] for i in faces.identity])


def out_of_fold(train: FaceSet, folds: int = 4, seeds: tuple[int, ...] = (0, 1, 2), log=print,
                **options) -> np.ndarray:
    """Every training face's weights as given out (`as_run`) by an ensemble that never saw its identity."""
    fold = identity_folds(train, folds)
    out = np.zeros_like(train.expression)
    for k in range(folds):
        log(f"fold {k + 1} of {folds}")
        net = train_ensemble(train.take(fold != k), seeds, log=lambda *_: None, **options)
        held = train.take(fold == k)
        out[fold == k] = as_run(held, predict(net, held.inputs())[0])
    return out


def jaw_calibration(predicted: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(scale, offset) that bring out-of-fold jawOpen readings closest to the fit's, in mean absolute error after
    clipping to 0..1 (a grid: scale 0.8-3 by 0.05, offset -0.06-0.06 by 0.005). The regressor reads the jaw of a
    person it never saw too narrow (the fit's widest mouths at 0.6-0.9); this undoes the part that is the same
    for everyone."""
    scales, offsets = np.arange(0.8, 3.0 + 1e-9, 0.05), np.arange(-0.06, 0.06 + 1e-9, 0.005)
    error = [[np.abs(np.clip(a * predicted + b, 0, 1) - target).mean() for b in offsets] for a in scales]
    i, k = np.unravel_index(int(np.argmin(error)), (len(scales), len(offsets)))
    return round(float(scales[i]), 4), round(float(offsets[k]), 4)


def mirror_ensemble(nets: list, jaw: tuple[float, float] = (1.0, 0.0)):
    """The networks' mean answer over the face and its mirror image, as one module (what export_engine writes),
    its jawOpen then scaled and offset by `jaw` (`jaw_calibration`; jawOpen is its own mirror image).

    A mirror image's rotation remainder D = (a, b, c) is the face's (a, -b, -c) (x flipped on both sides of the
    rotation); its weights come back with Left and Right swapped."""
    import torch
    from torch import nn

    from facetrack.tracker.facemodel.expression_head import arkit_mirror

    index, sign = mirror_tables()  # for both halves of the input: the face and its track's context
    index, sign = np.concatenate([index, index + N_FEATURES]), np.concatenate([sign, sign])
    first = nets[0]
    if any(not torch.equal(n.axes, first.axes) or not torch.equal(n.mean, first.mean) for n in nets):
        raise ValueError("the ensemble's networks must share their projection (train them on the same faces)")

    class MirrorEnsemble(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.nets = nn.ModuleList(nets)
            self.register_buffer("index", torch.from_numpy(index))
            self.register_buffer("sign", torch.from_numpy(sign))
            self.register_buffer("swap", torch.from_numpy(arkit_mirror().astype(np.int64)))
            self.register_buffer("rot_sign", torch.tensor([1.0, -1.0, -1.0]))
            self.register_buffer("scale", torch.ones(len(ARKIT_BLENDSHAPES)))
            self.register_buffer("offset", torch.zeros(len(ARKIT_BLENDSHAPES)))
            self.scale[ARKIT_BLENDSHAPES.index("jawOpen")], self.offset[ARKIT_BLENDSHAPES.index("jawOpen")] = jaw

        def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z, zm = self.nets[0].project(inputs), self.nets[0].project(inputs[:, self.index] * self.sign)
            expressions, rotations = [], []
            for net in self.nets:  # one projection for all: the networks differ only after it
                e, d = net.split(z)
                em, dm = net.split(zm)
                expressions += [e, em[:, self.swap]]
                rotations += [d, dm * self.rot_sign]
            return torch.stack(expressions).mean(0) * self.scale + self.offset, torch.stack(rotations).mean(0)

    return MirrorEnsemble().eval()


def predict(net, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ARKit weights clipped to 0..1, rotation remainder rotvec) of the torch network for `FaceSet.inputs()`."""
    import torch

    with torch.no_grad():
        e, d = net(torch.from_numpy(inputs))
    return np.clip(e.numpy(), 0, 1), d.numpy()


def as_run(faces: FaceSet, expression: np.ndarray) -> np.ndarray:
    """The weights as the regress stage gives them out: each clip (and its mirrored copy) is one track in frame
    order, through the stage's own per-track rest face (`RegressRest`); a photo is a track of one frame."""
    out = expression.copy()
    rest = RegressRest()
    for track, source in enumerate(np.unique(faces.source)):
        if str(source).startswith("clip-"):
            for row in np.flatnonzero(faces.source == source):
                out[row] = rest.apply(track, expression[row])
    return out


def export_engine(net, path: Path, metadata: dict) -> Path:
    """ONNX (opset 17, dynamic batch) with input `features` (`engine_input`: a face's features and its track's
    context), outputs OUTPUTS, and its checksummed sidecar."""
    import warnings

    import torch

    from facetrack.training.export import attach_metadata

    path.parent.mkdir(parents=True, exist_ok=True)
    names = ["features", *OUTPUTS]
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated; the dynamo one needs onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, torch.zeros(1, 2 * N_FEATURES), str(path), input_names=["features"],
                          output_names=list(OUTPUTS), dynamic_axes={n: {0: "n"} for n in names}, opset_version=17,
                          dynamo=False)
    return attach_metadata(path, {"engine": "regress", "input": "landmarks", "features": 2 * N_FEATURES,
                                  "context_window": CONTEXT_WINDOW, "outputs": OUTPUTS, **metadata})


def rotation_error_deg(r0: np.ndarray, residual: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Angle in degrees between R0 @ exp(residual) and the target rotations."""
    pred = r0 @ Rotation.from_rotvec(residual.astype(np.float64)).as_matrix()
    return np.degrees(Rotation.from_matrix(np.einsum("nji,njk->nik", pred, target)).magnitude())
