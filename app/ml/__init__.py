"""Embedding model runtime, slice matching and evaluation (Qt-free)."""
