"""Evaluation: predictions on a split, metrics, plots."""
