"""Pictures of results: the overlay drawn on frames, plots of a run, the demo clip."""
