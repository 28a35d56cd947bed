"""Benchmark runners behind ``ocrkit bench ...``: variants side by side, repeated, medians."""
