"""ocrkit: train, evaluate and benchmark DBNet scene-text detectors."""

__version__ = "0.1.0"
