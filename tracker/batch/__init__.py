"""Many clips at once: inputs, the manifest, the per-clip worker, local processes or Ray."""
