"""Reporting a study: MLflow runs and artifacts, Pareto plots."""
