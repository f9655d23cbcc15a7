"""The sketch query: the drawing canvas, the search worker, the results grid and its window."""
