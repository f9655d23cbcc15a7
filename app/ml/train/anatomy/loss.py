"""Metric-learning objective: contrastive loss with z-distance soft targets.

Plain InfoNCE calls one slice "the" positive and every other slice an equally
wrong answer. Along z that is false: the slice 2 mm away is nearly right, the
one 20 mm away is wrong, and a scan with 5 mm slices has no slice at exactly
the anchor's level. So each anchor's target distribution over the other
images of the batch is a Gaussian in level difference (same volume only);
the network learns to rank candidates by anatomical distance, which is what
nearest-neighbour search and the monotonic alignment downstream need.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_target_contrastive_loss", "batch_top1_error_mm"]


def _soft_targets(z: torch.Tensor, volume: torch.Tensor, sigma_mm: float) -> torch.Tensor:
    dz = z[:, None] - z[None, :]
    same = volume[:, None] == volume[None, :]
    target = torch.exp(-0.5 * (dz / sigma_mm) ** 2) * same
    target.fill_diagonal_(0.0)
    return target / target.sum(dim=1, keepdim=True).clamp_min(1e-12)


def soft_target_contrastive_loss(
    embeddings: torch.Tensor,
    z: torch.Tensor,
    volume: torch.Tensor,
    *,
    sigma_mm: float = 2.0,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Cross-entropy between similarity softmax and z-distance soft targets.

    Parameters
    ----------
    embeddings
        ``(N, D)`` L2-normalised embeddings of every image in the batch.
    z
        ``(N,)`` anatomical level of each image (mm, source coordinates).
    volume
        ``(N,)`` training volume of each image; levels compare only within
        one volume, other volumes are negatives.
    sigma_mm
        Width of the Gaussian target in level difference.
    temperature
        Softmax temperature on cosine similarity.

    Returns
    -------
    torch.Tensor
        Scalar loss (mean over anchors), minus the targets' entropy so a
        perfect ranking scores 0 whatever ``sigma_mm``.
    """
    logits = embeddings @ embeddings.T / temperature
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    target = _soft_targets(z, volume, sigma_mm)
    log_p = F.log_softmax(logits, dim=1).masked_fill(eye, 0.0)
    cross_entropy = -(target * log_p).sum(dim=1)
    entropy = -(target * torch.log(target.clamp_min(1e-12))).sum(dim=1)
    return (cross_entropy - entropy).mean()


@torch.no_grad()
def batch_top1_error_mm(
    embeddings: torch.Tensor, z: torch.Tensor, volume: torch.Tensor, scan: torch.Tensor
) -> torch.Tensor:
    """Mean ``|dz|`` (mm) of each image's nearest neighbour in another scan of its volume."""
    sim = embeddings @ embeddings.T
    allowed = (volume[:, None] == volume[None, :]) & (scan[:, None] != scan[None, :])
    sim = sim.masked_fill(~allowed, float("-inf"))
    has = allowed.any(dim=1)
    best = sim.argmax(dim=1)
    err = (z - z[best]).abs()
    return err[has].mean() if has.any() else torch.tensor(float("nan"))
