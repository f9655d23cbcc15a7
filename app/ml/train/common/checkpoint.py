"""Checkpoints and metric logs that let an interrupted training resume exactly."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from app.io.safe_write import replacing

__all__ = ["last_metrics", "resume_checkpoint", "save_checkpoint"]

log = logging.getLogger(__name__)


def resume_checkpoint(
    path: Path | None,
    config: dict,
    modules: Mapping[str, torch.nn.Module],
    optimiser: torch.optim.Optimizer,
    rng: np.random.Generator,
    gen: torch.Generator,
) -> int:
    """Restore a run from its checkpoint when that was made with ``config``.

    ``modules`` maps each checkpoint key to the network it holds; the
    optimiser, the sampler's ``rng`` and the augmentation ``gen`` are restored
    too, so the resumed run continues exactly where the first stopped.

    Returns
    -------
    int
        The step to start from (0 when there is no matching checkpoint).
    """
    if path is None or not path.exists():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("config") != config:
        log.warning("checkpoint settings differ from this run's; starting afresh")
        return 0
    for key, module in modules.items():
        module.load_state_dict(state[key])
    optimiser.load_state_dict(state["optimiser"])
    rng.bit_generator.state = state["sampler_rng"]
    gen.set_state(state["augment_rng"])
    start = int(state["step"])
    log.info("resumed from step %d", start)
    return start


def last_metrics(path: Path, step: int) -> dict | None:
    """The metrics record logged at ``step`` (the last such line), if any.

    A resumed run reports these until it logs its own figures (all along,
    when nothing was left to train).
    """
    found = None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by the interruption
        if isinstance(record, dict) and record.get("step") == step:
            found = record
    return found


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a checkpoint atomically (temp file in the same folder, then rename)."""
    with replacing(path) as tmp:
        torch.save(state, tmp)
