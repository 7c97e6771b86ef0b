"""The shared vocabulary: result schema, errors, geometry, timing, the sink protocol, output paths.

Everything may import core; core imports nothing of facetrack outside itself.
"""
