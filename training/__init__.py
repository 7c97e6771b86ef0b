"""Builds facetrack's own engines from data (needs the `train` extra: PyTorch, onnx).

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
- `cli`: `facetrack train eye-state DATA_DIR`, `facetrack train regressor --config FILE`.
"""
