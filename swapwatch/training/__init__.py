"""Training data generation, training, export and calibration of the detector."""
