"""The sketch query: the sketch and abnormality encoders, the archive they search, the search."""
