"""The linked cursor in the viewer: placing it, answering it per date, painting it."""
