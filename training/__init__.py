"""Builds facetrack's own engines from data (needs the `train` extra: PyTorch, onnx).

- `landmark_files`, `image_data`: 68/478-point label files (`.pts`, AFLW2000-3D `.mat`, `.npy`)
  and image folders turned into aligned crops (the recipes' `npz` data);
- `part_masks`: part masks (eyes, nose, lips, skin) from the face mesh's own part polygons;
- `face_features`: a frozen face network for the perceptual loss (the mediapipe wheel's mesh
  network, or a user's ONNX face-recognition model);
- `eye_data`: the eye-state dataset layout, face images cut into eye crops by the landmark
  engine, the held-back split, augmentation;
- `eye_state`: the eye-state networks, the trainer, evaluation and ONNX export;
- `losses`: the papers' losses (landmark + hard points, ELAM/LDL, PRDL, photometric, mouth,
  uniform albedo, SIR, regularisation);
- `render`: the differentiable renderer (projection, SH + Blinn-Phong shading, soft splat);
- `recipe`, `regressor`: the coefficient regressor, its validated recipes, trainer and export;
- `synthetic`: a random linear face model and renders of it (known-answer data);
- `distil`: crops and pseudo-labels from the tracker on video clips;
- `scan_eval`: similarity ICP and scan-to-mesh errors against 3D scans;
- `cli`: `facetrack train data images|clips`, `facetrack train eye-state DATA_DIR`,
  `facetrack train regressor --config FILE`.
"""
