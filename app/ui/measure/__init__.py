"""Measurements in the viewer: tools, propagation to priors, the follow-up table, saving."""
