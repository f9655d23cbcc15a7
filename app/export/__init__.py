"""Export of matched slice pairs (Qt-free): rendering, privacy, safe writes."""
