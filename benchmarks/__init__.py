"""Benchmarks of rsi_plugin: one script per measured path; ``python -m benchmarks`` runs them all."""
