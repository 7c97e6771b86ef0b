"""The per-face stages of the pipeline, in the order a frame runs them (tracker/pipeline.py):

tracks -> eye_state (eye state + ELAM) -> fit | regress -> pose -> dynamics -> gaze -> filter -> events.
"""
