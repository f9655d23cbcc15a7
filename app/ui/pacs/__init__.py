"""PACS in the viewer: server settings, File ▸ Open from PACS, background fetch jobs."""
