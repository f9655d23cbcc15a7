"""Training loop of the sketch encoders (abnormality and sketch networks, jointly).

Sampler (numpy stream) -> light image augmentation (torch generator) -> both
networks -> symmetric soft-target InfoNCE. Checkpoints hold both networks, the
optimiser and both random streams, so a resumed run continues exactly as an
uninterrupted one would.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from app.ml.runtime.preprocess import InputSpec
from app.ml.train.common.augment import AugmentConfig, augment
from app.ml.train.common.checkpoint import last_metrics, resume_checkpoint, save_checkpoint
from app.ml.train.common.optim import adamw, lr_at
from app.ml.train.sketch.data import HUBank, LesionBatchSampler, SketchDataConfig
from app.ml.train.sketch.loss import (
    lesion_map_loss,
    lesion_map_targets,
    sketch_batch_metrics,
    sketch_contrastive_loss,
    sketch_image_targets,
)
from app.ml.train.sketch.model import (
    AbnormalityNet,
    EncoderConfig,
    SketchNet,
    abnormality_config,
    sketch_config,
)

__all__ = ["SketchTrainConfig", "SketchTrainResult", "train_sketch"]

log = logging.getLogger(__name__)

# Geometry stays gentle: the sketch is placed relative to the un-augmented
# slice, and the sketch's own jitter already models misplacement.
LIGHT_AUGMENT = AugmentConfig(rotation_deg=3.0, scale=0.04, anisotropy=0.02, shift_px=1.5)


@dataclass(frozen=True)
class SketchTrainConfig:
    """Every setting that shapes the trained weights (stored with the models)."""

    seed: int = 0
    steps: int = 4000
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    temperature: float = 0.1
    sigma_px: float = 3.0
    map_loss_weight: float = 10.0
    data: SketchDataConfig = field(default_factory=SketchDataConfig)
    abnormality: EncoderConfig = field(default_factory=abnormality_config)
    sketch: EncoderConfig = field(default_factory=sketch_config)
    augment: AugmentConfig = LIGHT_AUGMENT

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SketchTrainResult:
    """The trained networks and the last logged (smoothed) figures."""

    abnormality: AbnormalityNet
    sketch: SketchNet
    steps_done: int
    final_loss: float
    final_top1: float
    final_beats_clean: float
    steps_per_s: float


def train_sketch(
    cfg: SketchTrainConfig,
    bank: HUBank,
    spec: InputSpec,
    *,
    run_dir: Path | None = None,
    log_every: int = 50,
    checkpoint_every: int = 200,
    resume: bool = False,
) -> SketchTrainResult:
    """Train both sketch encoders on lesions inserted into a bank of HU slices.

    Parameters
    ----------
    cfg
        Settings; ``cfg.seed`` makes the run reproducible.
    bank
        Lesion-free model-frame HU slices of the training volumes.
    spec
        The model frame the bank was built in.
    run_dir
        Where ``sketch-checkpoint.pt`` and ``sketch-metrics.jsonl`` go (nothing
        saved when ``None``).
    log_every, checkpoint_every
        Periods in steps.
    resume
        Continue from the run folder's checkpoint when its settings match.
    """
    torch.manual_seed(cfg.seed)
    abn = AbnormalityNet(cfg.abnormality)
    skn = SketchNet(cfg.sketch)
    sampler = LesionBatchSampler(bank, np.random.default_rng([cfg.seed, 11]), spec, cfg.data)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + 12)
    optimiser = adamw([*abn.parameters(), *skn.parameters()], cfg.lr, cfg.weight_decay)
    ckpt_path = run_dir / "sketch-checkpoint.pt" if run_dir else None
    start = 0
    if resume:
        modules = {"abnormality": abn, "sketch": skn}
        start = resume_checkpoint(ckpt_path, cfg.to_dict(), modules, optimiser, sampler.rng, gen)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    metrics_file = (run_dir / "sketch-metrics.jsonl").open("a") if run_dir else None

    abn.train()
    skn.train()
    loss_avg = top1_avg = beats_avg = float("nan")
    t0 = time.perf_counter()
    steps_per_s = 0.0
    last = last_metrics(run_dir / "sketch-metrics.jsonl", start) if start and run_dir else None
    if last is not None:
        loss_avg, top1_avg, beats_avg = last["loss"], last["top1"], last["beats_clean"]
        steps_per_s = last["steps_per_s"]
    b = cfg.data.bases

    def ema(old: float, new: float) -> float:
        return new if math.isnan(old) else 0.95 * old + 0.05 * new

    try:
        for step in range(start, cfg.steps):
            for group in optimiser.param_groups:
                group["lr"] = lr_at(step, cfg)
            batch = sampler.sample()
            x = augment(torch.from_numpy(batch.images), spec, gen, cfg.augment)
            s = torch.from_numpy(batch.sketches)
            image_emb, image_maps = abn.forward_with_maps(x)
            sketch_emb, sketch_maps = skn.forward_with_maps(s)
            owner = torch.from_numpy(batch.sketch_image)
            targets = sketch_image_targets(
                owner,
                torch.from_numpy(batch.sketch_class),
                torch.from_numpy(batch.sketch_centre),
                torch.from_numpy(batch.sketch_diameter),
                torch.from_numpy(batch.image_class),
                torch.from_numpy(batch.image_centre),
                torch.from_numpy(batch.image_diameter),
                sigma_px=cfg.sigma_px,
            )
            n_cls = s.shape[1]
            side = image_maps.shape[-1]
            image_cls = torch.from_numpy(batch.image_class)
            map_loss = lesion_map_loss(
                image_maps[:, :n_cls],
                lesion_map_targets(torch.from_numpy(batch.image_mask), image_cls, n_cls, side),
            )
            # A sketch's map is supervised by what it draws (its coverage).
            sketch_presence = F.adaptive_max_pool2d((s >= 0.5).float(), side)
            map_loss = map_loss + lesion_map_loss(sketch_maps[:, :n_cls], sketch_presence)
            loss = (
                sketch_contrastive_loss(sketch_emb, image_emb, targets, temperature=cfg.temperature)
                + cfg.map_loss_weight * map_loss
            )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            # Image b + i is base i without a lesion; sketches i and b + i belong to base i.
            clean = b + torch.arange(2 * b) % b
            top1, beats = sketch_batch_metrics(
                sketch_emb.detach(), image_emb.detach(), owner, clean
            )
            loss_avg = ema(loss_avg, float(loss.detach()))
            top1_avg, beats_avg = ema(top1_avg, top1), ema(beats_avg, beats)
            done = step + 1
            if done % log_every == 0 or done == cfg.steps:
                steps_per_s = (done - start) / (time.perf_counter() - t0)
                record = {
                    "step": done,
                    "loss": round(loss_avg, 5),
                    "top1": round(top1_avg, 4),
                    "beats_clean": round(beats_avg, 4),
                    "lr": lr_at(step, cfg),
                    "steps_per_s": round(steps_per_s, 4),
                }
                log.info(
                    "step %d/%d loss %.4f batch top1 %.3f beats-clean %.3f (%.2f steps/s)",
                    done,
                    cfg.steps,
                    loss_avg,
                    top1_avg,
                    beats_avg,
                    steps_per_s,
                )
                if metrics_file:
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
            if ckpt_path is not None and (done % checkpoint_every == 0 or done == cfg.steps):
                save_checkpoint(
                    ckpt_path,
                    {
                        "config": cfg.to_dict(),
                        "abnormality": abn.state_dict(),
                        "sketch": skn.state_dict(),
                        "optimiser": optimiser.state_dict(),
                        "sampler_rng": sampler.rng.bit_generator.state,
                        "augment_rng": gen.get_state(),
                        "step": done,
                    },
                )
    finally:
        if metrics_file:
            metrics_file.close()
    abn.eval()
    skn.eval()
    return SketchTrainResult(
        abn, skn, max(start, cfg.steps), loss_avg, top1_avg, beats_avg, steps_per_s
    )
