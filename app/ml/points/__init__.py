"""Point correspondence: where a point of the current CT lies in each prior.

Qt-free. :class:`~app.ml.points.engine.PointEngine` (pairs from a matcher) and
:class:`~app.ml.points.locate.PointPair` (one pair: ``locate(point)``) are the
API; :mod:`app.ml.evaluation.points` measures it on simulated pairs.
"""
