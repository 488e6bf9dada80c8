"""swapwatch: real-time detection of face swaps and other face deepfakes in live video."""

__version__ = "0.1.0"
