"""`python -m facetrack.tracker.cli`: the `facetrack` command without its console script."""

from facetrack.tracker.cli.app import main

main()
