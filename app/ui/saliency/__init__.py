"""The saliency overlay: background computation and when the window asks for it."""
