"""Showing slices: viewports, overlay text, side views, the hanging, layouts, the study browser."""
