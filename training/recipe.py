"""Training recipes for the coefficient regressor: one validated config per paper, plus ours.

A recipe is a JSON (or YAML, when PyYAML is installed) file checked by pydantic, so a
typo'd key or a negative weight fails before any training starts. Weights are the
papers' (DESIGN.md, "The papers"); a loss whose weight is 0 is not computed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LossWeights(_Strict):
    """Loss weights. Landmark and PRDL losses are in pixels of the input crop."""

    lmk: float = Field(1.6e-3, ge=0, description="Landmark loss.")
    lmk_eye_mouth: float = Field(1.5, ge=0, description="Per-point weight of eye and mouth landmarks.")
    lmk_contour: float = Field(0.5, ge=0, description="Per-point weight of the jaw contour.")
    lmk_normalise_hw: bool = Field(False, description="Divide the landmark loss by H*W (3DDFA-V3).")
    hard_points: int = Field(0, ge=0, le=68,
                             description="Zhou & Huang: extra loss on the k worst points of the last epoch.")
    hard_weight: float = Field(1.0, ge=0)
    ldl: float = Field(0.0, ge=0, description="Landmark distance loss on lid and lip pairs.")
    elam: bool = Field(False, description="Correct the LDL lid targets with the eye-state probability "
                                          "(needs p_closed).")
    prdl: float = Field(0.0, ge=0, description="Part re-projection distance loss (normalised by H*W).")
    prdl_grid: int = Field(8, ge=2, le=64, description="Anchors per side of the image grid.")
    prdl_points: int = Field(64, ge=4, description="Target points per part after farthest point sampling.")
    prdl_skin_points: int = Field(3000, ge=4, description="Skin target points after FPS (the paper: 3000).")
    prdl_parts: Literal["ibug68", "mesh478"] = Field(
        "ibug68", description="Where the PRDL parts come from: the iBUG-68 polygons (any data, any model) or the "
                              "face mesh's own part polygons ('mesh478': finer lids, lips and face oval; needs "
                              "`landmarks478` in the data and a model whose vertices are the 478 mesh points, i.e. "
                              "the built-in rig).")
    pho: float = Field(0.0, ge=0, description="Skin-weighted photometric loss.")
    per: float = Field(0.0, ge=0, description="Perceptual/identity loss: 1 - cos of face-network embeddings of the "
                                             "input and of the render pasted over it (training/face_features.py).")
    per_network: str = Field("mediapipe", description="The face network: 'mediapipe' (the wheel's mesh network) or "
                                                      "a path to an ONNX face-recognition model (e.g. ArcFace).")
    mouth: float = Field(0.0, ge=0, description="Inner-mouth area loss.")
    mouth_warmup_steps: int = Field(0, ge=0, description="Steps before the mouth loss switches on.")
    uniform: float = Field(0.0, ge=0, description="Uniform loss on the diffuse albedo over skin.")
    reg_id: float = Field(3e-4, ge=0)
    reg_exp: float = Field(3e-4, ge=0)
    reg_tex: float = Field(3e-4, ge=0)
    sir_cos: float = Field(0.0, ge=0, description="SIR cos-loss on identity coefficients (needs subject labels).")
    sir_center: float = Field(0.0, ge=0, description="SIR weighted center loss.")
    sir_kl: float = Field(0.0, ge=0, description="SIR KL prior of alpha/sigma toward N(0, 1).")
    sir_lambda: float = Field(1.0, ge=0, description="Expression damping in SIR's confidence.")
    sir_center_rate: float = Field(0.5, gt=0, le=1)
    coef: float = Field(0.0, ge=0, description="Distillation: error to target coefficients (fitter pseudo-labels).")
    coef_kind: Literal["l2", "l1", "l1+l2"] = Field(
        "l2", description="Distillation error: squared (pulls an unpredictable weight to its mean), absolute (to its "
                          "median) or their sum (the median for small errors, a strong pull on large ones).")


class DataConfig(_Strict):
    kind: Literal["synthetic", "npz"] = "synthetic"
    path: Path | None = Field(None, description="npz: images (N,H,W,3) uint8, landmarks (N,68,2) [+ landmarks478, "
                                                "p_closed, subject, identity, expression, pose].")
    samples: int = Field(256, ge=4, description="synthetic: how many images.")
    subjects: int = Field(32, ge=1, description="synthetic: identities (SIR needs several views of each).")
    held_fraction: float = Field(0.125, ge=0, lt=1)
    held_subjects: list[int] | None = Field(None, description="Hold out these subjects (clips) instead of a "
                                                               "random fraction of samples.")
    seed: int = 0

    @model_validator(mode="after")
    def _path(self) -> "DataConfig":
        if self.kind == "npz" and self.path is None:
            raise ValueError("data.kind npz needs data.path")
        return self


class ModelConfig(_Strict):
    face_model: str = Field("synthetic", description="'synthetic' (the random test model) or a facemodel .npz path.")
    identity: int = Field(6, ge=1, description="synthetic model: identity modes.")
    expression: int = Field(4, ge=1, description="synthetic model: expression modes.")
    texture: int = Field(3, ge=0, description="synthetic model: albedo modes.")
    seed: int = 0


class NetConfig(_Strict):
    backbone: Literal["small", "resnet50"] = "small"
    width: int = Field(16, ge=4, le=256, description="small: channels of the first stage.")
    input_size: int = Field(224, ge=32, le=512, description="Aligned square crops, pixels.")


class TrainSettings(_Strict):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(16, ge=2)
    lr: float = Field(1e-3, gt=0)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="Per-epoch learning rate: constant, or a cosine decay toward 0 at `epochs` (settles "
                                "the weights that a constant rate leaves jittering from epoch to epoch).")
    weight_decay: float = Field(1e-4, ge=0)
    seed: int = 0
    threads: int = Field(2, ge=1)
    max_seconds: float | None = Field(None, gt=0)
    splat_sigma: float = Field(1.0, gt=0, description="Renderer splat radius, pixels (about the vertex spacing / 2).")
    augment_rotation_deg: float = Field(0.0, ge=0, le=45, description="Random in-plane rotation of the crops.")
    augment_scale: float = Field(0.0, ge=0, lt=0.5, description="Random zoom of the crops, +- this fraction.")
    augment_colour: float = Field(0.0, ge=0, lt=1, description="Random per-channel gain and brightness, +- this.")
    augment_flip: float = Field(0.0, ge=0, le=1, description="Probability of a left/right mirror (68 points, eye "
                                                          "states, ARKit Left/Right weights and eye parts swapped).")


class Recipe(_Strict):
    name: str
    paper: str = ""
    notes: str = Field("", description="Where each weight comes from, and what is our reading.")
    losses: LossWeights = LossWeights()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    net: NetConfig = NetConfig()
    train: TrainSettings = TrainSettings()


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file (.json, or .yaml/.yml with PyYAML)."""
    path = Path(path)
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(text)
    else:
        raw = json.loads(text)
    recipe = Recipe.model_validate(raw)
    if recipe.data.path is not None and not recipe.data.path.is_absolute():
        recipe.data.path = (path.parent / recipe.data.path).resolve()
    return recipe
