"""Audio in: sources, resampling, VAD, noise gate, segmentation, windowing."""
