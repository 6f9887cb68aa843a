"""After fit: encoder tuning, soups, ensembles, held-out measuring."""
