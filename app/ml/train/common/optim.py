"""Optimiser, learning-rate schedule and thread count shared by both trainings."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

import torch

__all__ = ["ScheduleConfig", "adamw", "lr_at", "set_threads"]


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads for PyTorch (results depend slightly on the count)."""
    torch.set_num_threads(max(1, int(n)))


class ScheduleConfig(Protocol):
    """What :func:`lr_at` reads from a training configuration."""

    @property
    def lr(self) -> float: ...
    @property
    def warmup_steps(self) -> int: ...
    @property
    def steps(self) -> int: ...


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
