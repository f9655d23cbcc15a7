"""The anatomy engine: slice embeddings -> series index -> matching and alignment -> sync."""
