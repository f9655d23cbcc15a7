"""Raw embedding quality on held-out simulated pairs: nearest neighbour only.

This measures the embedding alone (no search index, no alignment, no
refinement): for every slice of a simulated "current" scan whose level the
"prior" covers, the prior slice with the highest cosine similarity, and how
far (mm) it lies from the true level. The engine's ``priorsync eval`` scores
the full matcher; this is the model card's figure for the network itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.core.volume import Volume
from app.ml.runtime.preprocess import InputSpec, prepare_slices

__all__ = ["NNFigures", "OnnxEmbedder", "evaluate_nearest_neighbour", "nn_errors_mm"]


class OnnxEmbedder:
    """Embed whole volumes with an exported model on the CPU (batches of 32)."""

    def __init__(self, path: Path | str, threads: int = 2) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.spec = InputSpec.from_metadata(meta)

    def __call__(self, volume: Volume, batch_size: int = 32) -> np.ndarray:
        out = []
        for start in range(0, volume.n_slices, batch_size):
            idx = np.arange(start, min(start + batch_size, volume.n_slices))
            x = prepare_slices(volume, idx, self.spec)
            out.append(self.session.run(["embedding"], {"slices": x})[0])
        return np.concatenate(out)


def nn_errors_mm(
    current_emb: np.ndarray,
    prior_emb: np.ndarray,
    prior_slice_z: np.ndarray,
    true_prior_z: np.ndarray,
    in_coverage: np.ndarray,
) -> np.ndarray:
    """``|dz|`` (mm) of each covered current slice's nearest prior slice.

    Parameters
    ----------
    current_emb, prior_emb
        ``(n, D)`` and ``(m, D)`` L2-normalised embeddings.
    prior_slice_z
        ``(m,)`` ``slice_z`` of the prior's slices.
    true_prior_z, in_coverage
        From :func:`app.sim.followup.true_correspondence`.
    """
    best = np.argmax(current_emb @ prior_emb.T, axis=1)
    err = np.abs(prior_slice_z[best] - true_prior_z)
    return err[np.asarray(in_coverage, dtype=bool)]


@dataclass
class NNFigures:
    """Summary of nearest-neighbour errors over many slices."""

    n: int
    median_mm: float
    mean_mm: float
    p90_mm: float
    within_5mm: float
    within_10mm: float

    @classmethod
    def from_errors(cls, err: np.ndarray) -> NNFigures:
        if len(err) == 0:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan, nan)
        return cls(
            n=len(err),
            median_mm=float(np.median(err)),
            mean_mm=float(np.mean(err)),
            p90_mm=float(np.percentile(err, 90)),
            within_5mm=float(np.mean(err <= 5.0)),
            within_10mm=float(np.mean(err <= 10.0)),
        )

    def line(self) -> str:
        return (
            f"n={self.n} median {self.median_mm:.1f} mm, mean {self.mean_mm:.1f} mm, "
            f"p90 {self.p90_mm:.1f} mm, <=5 mm {100 * self.within_5mm:.0f}%, "
            f"<=10 mm {100 * self.within_10mm:.0f}%"
        )


def evaluate_nearest_neighbour(
    embed: Callable[[Volume], np.ndarray],
    volume_names: Sequence[str],
    preset: str,
    pairs: int,
    seed: int,
) -> dict[str, NNFigures]:
    """Nearest-neighbour errors on simulated (current, prior) pairs per volume.

    Parameters
    ----------
    embed
        ``volume -> (n, D)`` embeddings.
    volume_names
        Source volumes (the held-out ones for a fair figure).
    preset
        Simulation preset, e.g. ``"standard"`` or ``"hard"``.
    pairs
        Simulated pairs per volume.
    seed
        Seeds the simulation (same seed, same pairs).

    Returns
    -------
    dict
        Figures per volume and ``"all"`` (slices of every volume pooled).
    """
    from app.sim.followup import SIM_PRESETS, simulate_followup, true_correspondence
    from app.sim.sources import load_source

    params = SIM_PRESETS[preset]
    results: dict[str, NNFigures] = {}
    pooled = []
    for vi, name in enumerate(volume_names):
        source = load_source(name)
        rng = np.random.default_rng([seed, vi, 7])
        errors = []
        for _ in range(pairs):
            current = simulate_followup(source, params, rng)
            prior = simulate_followup(source, params, rng)
            truth, covered = true_correspondence(current, prior)
            errors.append(
                nn_errors_mm(
                    embed(current.volume), embed(prior.volume), prior.volume.slice_z, truth, covered
                )
            )
        err = np.concatenate(errors)
        pooled.append(err)
        results[name] = NNFigures.from_errors(err)
    results["all"] = NNFigures.from_errors(np.concatenate(pooled))
    return results
