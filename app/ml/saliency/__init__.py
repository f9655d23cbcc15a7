"""Why two slices match: similarity saliency maps from the embedding model's features."""
