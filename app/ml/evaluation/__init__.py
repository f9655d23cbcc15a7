"""Scoring the engines on simulated pairs: slice matching, baselines, sketch search, saliency."""
