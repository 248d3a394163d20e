"""Modality contribution: Shapley values over modality subsets with pluggable profit functions (papers 000, 001)."""
