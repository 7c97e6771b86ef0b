"""Builds facetrack's own engines from data (needs the `train` extra: PyTorch, onnx).

- `eye_data`: the eye-state dataset layout, face images cut into eye crops by the landmark
  engine, the held-back split, augmentation;
- `eye_state`: the eye-state networks, the trainer, evaluation and ONNX export;
- `cli`: `facetrack train eye-state DATA_DIR`.
"""
