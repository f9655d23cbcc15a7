"""Anatomical slice sync in the window: background indexing and the sync wiring of viewports."""
