"""The training loop: sampler -> augmentation -> network -> loss, with checkpoints.

Everything random flows from one seed (the sampler's numpy stream, the
augmentation's torch generator, the weight initialisation), and checkpoints
store those streams, so a resumed run continues exactly as an uninterrupted
one would.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from app.ml.runtime.preprocess import InputSpec
from app.ml.train.anatomy.data import PairSampler, SliceBank
from app.ml.train.anatomy.loss import batch_top1_error_mm, soft_target_contrastive_loss
from app.ml.train.anatomy.model import EmbeddingNet, NetConfig
from app.ml.train.common.augment import AugmentConfig, augment
from app.ml.train.common.checkpoint import last_metrics, resume_checkpoint, save_checkpoint
from app.ml.train.common.optim import adamw, lr_at

__all__ = [
    "TrainConfig",
    "TrainResult",
    "snapshot_path",
    "snapshot_steps",
    "train",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting that shapes the trained weights (stored with the model)."""

    seed: int = 0
    steps: int = 6000
    groups: int = 8
    per_group: int = 8
    window_mm: float = 30.0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    sigma_mm: float = 2.0
    temperature: float = 0.1
    # "volume": volumes drawn by z extent; "region": a body region first, then one
    # of its volumes (PairSampler ``regions``), so many bodies of one region do not drown the rest.
    sampling: str = "volume"
    net: NetConfig = field(default_factory=NetConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """The trained network and the last logged figures."""

    model: EmbeddingNet
    steps_done: int
    final_loss: float
    final_top1_mm: float
    steps_per_s: float


def snapshot_path(run_dir: Path, step: int) -> Path:
    """Where the weights-only snapshot of ``step`` lives in a run folder."""
    return run_dir / "snapshots" / f"step-{step:06d}.pt"


def snapshot_steps(run_dir: Path) -> list[int]:
    """Steps with a snapshot in ``run_dir``, ascending (candidates for checkpoint choice)."""
    folder = run_dir / "snapshots"
    steps = []
    for path in folder.glob("step-*.pt") if folder.is_dir() else []:
        digits = path.stem.removeprefix("step-")
        if digits.isdigit():
            steps.append(int(digits))
    return sorted(steps)


def train(
    cfg: TrainConfig,
    bank: SliceBank,
    spec: InputSpec,
    *,
    run_dir: Path | None = None,
    log_every: int = 50,
    checkpoint_every: int = 500,
    resume: bool = False,
    stop_at: int | None = None,
    regions: Sequence[str] | None = None,
    snapshot_every: int | None = None,
) -> TrainResult:
    """Train the embedding network on a slice bank.

    Parameters
    ----------
    cfg
        Settings; ``cfg.seed`` makes the run reproducible.
    bank
        Preprocessed training slices (training volumes only).
    spec
        Preprocessing the bank was built with.
    run_dir
        Where ``checkpoint.pt`` and ``metrics.jsonl`` go (nothing saved if ``None``).
    log_every, checkpoint_every
        Logging and checkpoint periods in steps.
    resume
        Continue from ``run_dir/checkpoint.pt`` when it exists and matches ``cfg``.
    stop_at
        Stop (with a checkpoint) after this step instead of ``cfg.steps``, e.g.
        to split a run into sessions; the learning-rate schedule still follows
        ``cfg.steps``, so resuming later gives the uninterrupted run's weights.
    regions
        Body region of each bank volume; required when ``cfg.sampling`` is
        ``"region"``, ignored otherwise.
    snapshot_every
        Also keep the weights of every such step under ``run_dir/snapshots``
        (the candidates a validation run chooses among); ``None``: none kept.
    """
    if cfg.sampling not in ("volume", "region"):
        raise ValueError(f"unknown sampling {cfg.sampling!r}; use 'volume' or 'region'")
    if cfg.sampling == "region" and regions is None:
        raise ValueError("region sampling needs the region of every bank volume")
    torch.manual_seed(cfg.seed)
    model = EmbeddingNet(cfg.net)
    sampler = PairSampler(
        bank,
        np.random.default_rng([cfg.seed, 1]),
        groups=cfg.groups,
        per_group=cfg.per_group,
        window_mm=cfg.window_mm,
        regions=regions if cfg.sampling == "region" else None,
    )
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + 2)
    optimiser = adamw(model.parameters(), cfg.lr, cfg.weight_decay)
    ckpt_path = run_dir / "checkpoint.pt" if run_dir else None
    start = 0
    if resume:
        start = resume_checkpoint(
            ckpt_path, cfg.to_dict(), {"model": model}, optimiser, sampler.rng, gen
        )
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    metrics_file = (run_dir / "metrics.jsonl").open("a") if run_dir else None

    model.train()
    loss_avg = err_avg = float("nan")
    t0 = time.perf_counter()
    steps_per_s = 0.0
    last = last_metrics(run_dir / "metrics.jsonl", start) if start and run_dir else None
    if last is not None:
        loss_avg, err_avg, steps_per_s = last["loss"], last["top1_mm"], last["steps_per_s"]
    try:
        end = cfg.steps if stop_at is None else min(cfg.steps, stop_at)
        for step in range(start, end):
            for group in optimiser.param_groups:
                group["lr"] = lr_at(step, cfg)
            batch = sampler.sample()
            x = augment(torch.from_numpy(batch.images), spec, gen, cfg.augment)
            z = torch.from_numpy(batch.z)
            vol = torch.from_numpy(batch.volume)
            emb, _ = model(x)
            loss = soft_target_contrastive_loss(
                emb, z, vol, sigma_mm=cfg.sigma_mm, temperature=cfg.temperature
            )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            err = float(batch_top1_error_mm(emb.detach(), z, vol, torch.from_numpy(batch.scan)))
            # Exponential moving averages make the logged figures readable.
            value = float(loss.detach())
            loss_avg = value if math.isnan(loss_avg) else 0.98 * loss_avg + 0.02 * value
            err_avg = err if math.isnan(err_avg) else 0.98 * err_avg + 0.02 * err
            done = step + 1
            if done % log_every == 0 or done == end:
                steps_per_s = (done - start) / (time.perf_counter() - t0)
                record = {
                    "step": done,
                    "loss": round(loss_avg, 5),
                    "top1_mm": round(err_avg, 3),
                    "lr": lr_at(step, cfg),
                    "steps_per_s": round(steps_per_s, 4),
                }
                log.info(
                    "step %d/%d loss %.4f batch-top1 %.2f mm (%.2f steps/s)",
                    done,
                    cfg.steps,
                    loss_avg,
                    err_avg,
                    steps_per_s,
                )
                if metrics_file:
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
            if ckpt_path is not None and (done % checkpoint_every == 0 or done == end):
                save_checkpoint(
                    ckpt_path,
                    {
                        "config": cfg.to_dict(),
                        "model": model.state_dict(),
                        "optimiser": optimiser.state_dict(),
                        "sampler_rng": sampler.rng.bit_generator.state,
                        "augment_rng": gen.get_state(),
                        "step": done,
                    },
                )
            if run_dir is not None and snapshot_every and done % snapshot_every == 0:
                save_checkpoint(
                    snapshot_path(run_dir, done),
                    {"config": cfg.to_dict(), "model": model.state_dict(), "step": done},
                )
    finally:
        if metrics_file:
            metrics_file.close()
    model.eval()
    return TrainResult(model, max(start, end), loss_avg, err_avg, steps_per_s)
