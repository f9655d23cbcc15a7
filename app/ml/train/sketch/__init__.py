"""Training and export of the sketch-query encoders (needs PyTorch)."""
