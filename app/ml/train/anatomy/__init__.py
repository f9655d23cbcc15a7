"""Training and export of the anatomy (slice-embedding) model (needs PyTorch)."""
