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
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from app.io.safe_write import replacing
from app.ml.runtime.preprocess import InputSpec
from app.ml.train.common.augment import AugmentConfig, augment
from app.ml.train.anatomy.data import PairSampler, SliceBank
from app.ml.train.anatomy.loss import batch_top1_error_mm, soft_target_contrastive_loss
from app.ml.train.anatomy.model import EmbeddingNet, NetConfig

__all__ = [
    "ScheduleConfig",
    "TrainConfig",
    "TrainResult",
    "adamw",
    "last_metrics",
    "lr_at",
    "resume_checkpoint",
    "save_checkpoint",
    "set_threads",
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


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads for PyTorch (results depend slightly on the count)."""
    torch.set_num_threads(max(1, int(n)))


class ScheduleConfig(Protocol):
    """What :func:`lr_at` reads from a training configuration."""

    lr: float
    warmup_steps: int
    steps: int


def lr_at(step: int, cfg: ScheduleConfig) -> float:
    """Linear warm-up, then cosine decay to 2 % of the peak (shared by both trainings)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def adamw(
    parameters: Iterable[torch.nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.AdamW:
    """AdamW with weight decay on weights only (never on biases or batch-norm scales)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in parameters:
        (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
    )


def resume_checkpoint(
    path: Path | None,
    config: dict,
    modules: dict[str, torch.nn.Module],
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
