"""Speech from a spec: templates, voices, augmentation, crowd, negatives, demo calls."""
