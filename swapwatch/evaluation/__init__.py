"""Measuring detectors: metrics, the evaluation runner and report, and peer baselines."""
