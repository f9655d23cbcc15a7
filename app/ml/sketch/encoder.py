"""What both sketch encoders are: the learned models and the rule-based lesion evidence.

:class:`SketchEncoder` is the interface the index, the archive, the search and
the evaluation use; :class:`~app.ml.sketch.models.SketchModels` (ONNX) and
:class:`~app.ml.sketch.evidence.LesionEvidence` (numpy rules) both satisfy it.
What they share, checking a sketch and coding it or a whole volume from the
encoder's own per-batch codes, is written once in :class:`SketchCoding`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from app.core.body import body_mask
from app.core.volume import Volume
from app.ml.runtime.model import embed_in_batches
from app.ml.runtime.preprocess import InputSpec, labels_to_input

__all__ = [
    "MIN_INSIDE_BODY",
    "SketchCoding",
    "SketchEncoder",
    "SketchError",
    "check_sketch_labels",
]

# A sketch is refused when less than this fraction of its pixels lies on the body.
MIN_INSIDE_BODY = 0.5


class SketchError(ValueError):
    """A sketch that cannot be searched for; ``str(error)`` is shown to the user."""


def check_sketch_labels(
    volume: Volume, k: int, labels: np.ndarray, classes: tuple[str, ...]
) -> None:
    """Raise :class:`SketchError` when a sketch cannot be searched for.

    Parameters
    ----------
    volume
        The template series the sketch was drawn on.
    k
        The template slice.
    labels
        ``(rows, cols)`` label image: 0 background, ``1..len(classes)`` lesion classes.
    classes
        The lesion class names.
    """
    labels = np.asarray(labels)
    rows, cols = volume.voxels.shape[1:]
    if labels.ndim != 2 or labels.shape != (rows, cols):
        raise SketchError(
            f"the sketch is {'x'.join(map(str, labels.shape))} pixels but the template "
            f"slice is {rows}x{cols}: draw it on the template shown"
        )
    if not 0 <= int(k) < volume.n_slices:
        raise SketchError(f"slice {k} is not in the template ({volume.n_slices} slices)")
    drawn = labels != 0
    n_drawn = int(drawn.sum())
    if n_drawn == 0:
        raise SketchError("Draw the abnormality first: the sketch is empty")
    if labels.min() < 0 or labels.max() > len(classes):
        raise SketchError(
            f"the sketch holds label values outside 0..{len(classes)} ({', '.join(classes)})"
        )
    inside = int((drawn & body_mask(volume.voxels[int(k)])).sum())
    if inside < MIN_INSIDE_BODY * n_drawn:
        raise SketchError(
            f"The sketch lies outside the body ({100 * inside / n_drawn:.0f} % of it on the "
            "patient): draw the abnormality inside the body"
        )


class SketchEncoder(Protocol):
    """An abnormality encoder and a sketch encoder whose codes share one inner-product space."""

    spec: InputSpec
    classes: tuple[str, ...]
    abnormality_dim: int
    default_weight: float
    provider: str
    abnormality_name: str
    sketch_name: str
    abnormality_sha256: str
    sketch_sha256: str

    @property
    def identity(self) -> str:
        """Names and hashes, as reports and archives record them."""
        ...

    def abnormality_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Abnormality codes ``(N, D)`` of prepared slices ``(N, C, S, S)``."""
        ...

    def abnormality_vectors(
        self,
        volume: Volume,
        batch_size: int = 32,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Abnormality codes ``(n_slices, D)`` of every slice of a display-oriented volume."""
        ...

    def check_sketch(self, volume: Volume, k: int, labels: np.ndarray) -> None:
        """Raise :class:`SketchError` when a sketch cannot be searched for."""
        ...

    def sketch_input(self, volume: Volume, k: int, labels: np.ndarray) -> np.ndarray:
        """The checked sketch in the model frame, ``(len(classes), S, S)`` coverage."""
        ...

    def sketch_inputs_vectors(self, inputs: np.ndarray) -> np.ndarray:
        """Sketch codes ``(N, D)`` of coverage maps ``(N, len(classes), S, S)``."""
        ...

    def sketch_vector(self, volume: Volume, k: int, labels: np.ndarray) -> np.ndarray:
        """The ``(D,)`` unit code of a sketch drawn on slice ``k`` of a template series."""
        ...


class SketchCoding:
    """The half of :class:`SketchEncoder` that both encoders share (a mixin).

    A subclass sets ``spec``, ``classes`` and ``abnormality_dim`` and gives
    :meth:`abnormality_of_slices` and :meth:`sketch_inputs_vectors`; this class
    builds the volume codes and the checked sketch codes on them.
    """

    spec: InputSpec
    classes: tuple[str, ...]
    abnormality_dim: int

    def abnormality_of_slices(self, volume: Volume, indices: np.ndarray) -> np.ndarray:
        """Abnormality codes ``(len(indices), D)`` of some slices of ``volume`` (one batch)."""
        raise NotImplementedError

    def sketch_inputs_vectors(self, inputs: np.ndarray) -> np.ndarray:
        """Sketch codes ``(N, D)`` of coverage maps ``(N, len(classes), S, S)``."""
        raise NotImplementedError

    def abnormality_vectors(
        self,
        volume: Volume,
        batch_size: int = 32,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Abnormality codes of every slice of a display-oriented volume.

        ``batch_size`` slices go in each call of :meth:`abnormality_of_slices`;
        ``progress(slices_done, n_slices)`` is called after each batch. Returns
        ``(n_slices, D)`` float32.
        """
        return embed_in_batches(
            volume, self.abnormality_dim, self.abnormality_of_slices, batch_size, progress
        )

    def check_sketch(self, volume: Volume, k: int, labels: np.ndarray) -> None:
        """Raise :class:`SketchError` when a sketch cannot be searched for (:func:`check_sketch_labels`)."""
        check_sketch_labels(volume, k, labels, self.classes)

    def sketch_input(self, volume: Volume, k: int, labels: np.ndarray) -> np.ndarray:
        """The checked sketch in the model frame, ``(len(classes), S, S)`` coverage."""
        self.check_sketch(volume, k, labels)
        return labels_to_input(volume, int(k), np.asarray(labels), len(self.classes), self.spec)

    def sketch_vector(self, volume: Volume, k: int, labels: np.ndarray) -> np.ndarray:
        """The code of a sketch drawn on slice ``k`` of a template series.

        Parameters
        ----------
        volume
            Display-oriented template series.
        k
            The slice the sketch was drawn on.
        labels
            ``(rows, cols)`` integer label image (0 background, class ``c`` = value ``c + 1``).

        Returns
        -------
        np.ndarray
            ``(D,)`` float32 unit vector.

        Raises
        ------
        SketchError
            Empty sketch, one mostly outside the body, unknown label values, or
            a label image whose shape is not the slice's.
        """
        return self.sketch_inputs_vectors(self.sketch_input(volume, k, labels))[0]
