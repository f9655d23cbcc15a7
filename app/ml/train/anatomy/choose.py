"""Choose a run's checkpoint on the VALIDATION bodies (raw nearest-neighbour error).

Every weight snapshot a run kept (:func:`app.ml.train.anatomy.loop.snapshot_path`)
is exported to a temporary ONNX file and scored on the same simulated
validation pairs (simulated and preprocessed once, kept as ``uint8`` like the
training bank); the candidate with the lowest mean |dz| over both presets
wins. The test bodies are never read here.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from app.io.safe_write import replacing
from app.ml.runtime.preprocess import InputSpec, prepare_slices
from app.ml.train.anatomy.loop import snapshot_path, snapshot_steps
from app.ml.train.anatomy.model import EmbeddingNet, NetConfig
from app.ml.train.anatomy.quick_eval import NNFigures, nn_errors_mm

__all__ = ["Choice", "ValidationPair", "choose_snapshot", "load_snapshot", "validation_pairs"]

log = logging.getLogger(__name__)


@dataclass
class ValidationPair:
    """One simulated validation pair, preprocessed (``uint8`` model input) with its truth."""

    source: str
    preset: str
    current: np.ndarray
    prior: np.ndarray
    prior_z: np.ndarray
    truth: np.ndarray
    covered: np.ndarray


@dataclass
class Choice:
    """The chosen step and every candidate's figures (mean |dz| mm per preset)."""

    step: int
    scores: dict[int, dict[str, float]]

    def to_dict(self) -> dict:
        return {"chosen_step": self.step, "scores": {str(k): v for k, v in self.scores.items()}}


def validation_pairs(
    names: Sequence[str], spec: InputSpec, pairs: int = 1, seed: int = 4321
) -> list[ValidationPair]:
    """Simulate ``pairs`` (current, prior) pairs per body and preset, preprocessed once."""
    from app.sim.followup import SIM_PRESETS, simulate_followup, true_correspondence
    from app.sim.sources import load_source

    out = []
    for vi, name in enumerate(names):
        source = load_source(name)
        for preset in ("standard", "hard"):
            rng = np.random.default_rng([seed, vi, sum(map(ord, preset))])
            for _ in range(pairs):
                cur = simulate_followup(source, SIM_PRESETS[preset], rng)
                pri = simulate_followup(source, SIM_PRESETS[preset], rng)
                truth, covered = true_correspondence(cur, pri)

                def u8(volume) -> np.ndarray:
                    return np.rint(prepare_slices(volume, spec=spec) * 255.0).astype(np.uint8)

                out.append(
                    ValidationPair(
                        name,
                        preset,
                        u8(cur.volume),
                        u8(pri.volume),
                        np.asarray(pri.volume.slice_z),
                        truth,
                        covered,
                    )
                )
    return out


def load_snapshot(path: Path) -> EmbeddingNet:
    """The network of a weight snapshot (or checkpoint), in eval mode."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    net = state["config"]["net"]
    model = EmbeddingNet(NetConfig(**net) if isinstance(net, dict) else net)
    model.load_state_dict(state["model"])
    model.eval()
    return model


def _score(embed: Callable[[np.ndarray], np.ndarray], pairs: list[ValidationPair]) -> dict:
    per: dict[str, list[np.ndarray]] = {}
    for p in pairs:
        err = nn_errors_mm(embed(p.current), embed(p.prior), p.prior_z, p.truth, p.covered)
        per.setdefault(p.preset, []).append(err)
    scores = {k: NNFigures.from_errors(np.concatenate(v)).mean_mm for k, v in per.items()}
    scores["mean"] = float(np.mean(list(scores.values())))
    return scores


def onnx_embedder(path: Path, threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """``uint8 (n, C, S, S) -> (n, D)`` embeddings of an ONNX model file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def embed(images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), 32):
            x = images[start : start + 32].astype(np.float32) / 255.0
            out.append(session.run(["embedding"], {"slices": x})[0])
        return np.concatenate(out)

    return embed


def choose_snapshot(
    run_dir: Path,
    pairs: list[ValidationPair],
    export: Callable[[EmbeddingNet, Path], Path],
    *,
    steps: Sequence[int] | None = None,
    threads: int = 1,
    reference: Path | None = None,
) -> Choice:
    """Score each snapshot (default: all the run kept) on ``pairs`` and pick the best.

    ``export(model, path)`` writes a candidate as ONNX (the command's
    exporter, with its metadata). ``reference`` (an ONNX file, e.g. the
    shipped model) is scored alongside as step ``-1``, never chosen. The
    figures go to ``run_dir/validation.json``.

    Raises
    ------
    ValueError
        The run kept no snapshot, or no validation pair was given.
    """
    candidates = list(steps) if steps is not None else snapshot_steps(run_dir)
    if not candidates:
        raise ValueError(f"{run_dir} holds no weight snapshot to choose from")
    if not pairs:
        raise ValueError("no validation pair to choose on")
    scores: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="choose-") as tmp:
        for step in candidates:
            model = load_snapshot(snapshot_path(run_dir, step))
            path = export(model, Path(tmp) / f"step-{step}.onnx")
            scores[step] = _score(onnx_embedder(path, threads), pairs)
            log.info("validation, step %d: %s", step, scores[step])
    if reference is not None:
        scores[-1] = _score(onnx_embedder(reference, threads), pairs)
        log.info("validation, reference %s: %s", reference.name, scores[-1])
    best = min((s for s in scores if s >= 0), key=lambda s: scores[s]["mean"])
    choice = Choice(best, scores)
    with replacing(run_dir / "validation.json") as tmp_path:
        tmp_path.write_text(json.dumps(choice.to_dict(), indent=1))
    return choice
