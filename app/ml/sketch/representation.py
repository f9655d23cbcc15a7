"""Which abnormality representation a sketch query uses: rule-based evidence or the learned pair.

Both have the interface the index, archives, the evaluation and the commands
use (``spec``, ``classes``, ``abnormality_dim``, ``default_weight``,
``abnormality_inputs``, ``abnormality_vectors``, ``sketch_vector``, ``identity``,
and the two names and hashes an archive records). ``learned`` is
:class:`~app.ml.sketch.models.SketchModels` (the two ONNX encoders; the
default: it scored better on the validation bodies, see ``models/README.md``);
``evidence`` is :class:`~app.ml.sketch.evidence.LesionEvidence` (rule-based;
the only one whose ranking puts every slice without lesion evidence under the
sketch below every slice with some).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.ml.sketch.encoder import SketchEncoder

__all__ = ["DEFAULT_REPRESENTATION", "REPRESENTATIONS", "load_sketch_representation"]

REPRESENTATIONS: tuple[str, ...] = ("evidence", "learned")
DEFAULT_REPRESENTATION = "learned"


def load_sketch_representation(
    kind: str | None = None,
    abnormality_path: Path | str | None = None,
    sketch_path: Path | str | None = None,
    device: str | None = None,
) -> SketchEncoder:
    """The representation named by ``kind`` (the shipped default when ``None``).

    Model files given without a ``kind`` mean the learned pair.

    Raises
    ------
    ValueError
        Unknown ``kind``, or model files given with ``kind="evidence"``.
    app.ml.runtime.model.ModelError
        The learned models are missing, corrupt or not a matching pair.
    """
    files = abnormality_path is not None or sketch_path is not None
    if kind is None:
        kind = "learned" if files else DEFAULT_REPRESENTATION
    if kind not in REPRESENTATIONS:
        raise ValueError(f"unknown sketch representation {kind!r}: {', '.join(REPRESENTATIONS)}")
    if kind == "evidence":
        if files:
            raise ValueError("the rule-based evidence representation reads no model files")
        from app.ml.sketch.evidence import LesionEvidence

        return LesionEvidence()
    from app.ml.sketch.models import SketchModels

    return SketchModels.load(abnormality_path, sketch_path, device=device)
