"""Step 1 of a frame: resolving a source and reading frames from a file, stream, webcam or image."""
