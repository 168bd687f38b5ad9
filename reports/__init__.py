"""Comparison tables and plots built from the tracked MLflow runs."""
