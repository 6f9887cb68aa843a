"""Fitting a classifier: data, features, batching, fit, calibration, reports."""
