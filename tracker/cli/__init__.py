"""The `facetrack` command: one click app (app.py) and a module per command group.

The CLI is the composition root: the only place in tracker/ that imports adapters/ and training/.
"""
