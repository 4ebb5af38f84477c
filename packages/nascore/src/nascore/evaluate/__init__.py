"""Evaluation: accuracy metrics and model complexity."""
