"""Sketch <-> image contrastive objective with soft targets for look-alike lesions.

Plain InfoNCE would call a sketch's own image the only right answer. But a
batch can hold another slice with a lesion of the same class at nearly the
same place and size: for a search engine that is a right answer too. So each
sketch's target over the batch's images is 1 for its own image plus, for
other images with a lesion of the same class, a weight falling off with the
distance between the lesions (Gaussian, ``sigma_px``) and with their size
ratio. Lesion-free images always get 0: they are negatives for every sketch.
The loss is the symmetric cross-entropy (sketch -> image over all images,
image -> sketch for the images that have a lesion). An auxiliary per-cell
lesion-presence loss (:func:`lesion_map_loss`) supervises the encoders' first
map channels, so the abnormality network learns to *find* lesions quickly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "lesion_map_loss",
    "lesion_map_targets",
    "sketch_batch_metrics",
    "sketch_contrastive_loss",
    "sketch_image_targets",
]


def sketch_image_targets(
    sketch_image: torch.Tensor,
    sketch_class: torch.Tensor,
    sketch_centre: torch.Tensor,
    sketch_diameter: torch.Tensor,
    image_class: torch.Tensor,
    image_centre: torch.Tensor,
    image_diameter: torch.Tensor,
    *,
    sigma_px: float = 3.0,
    log_size_sigma: float = 0.35,
    cross_weight: float = 0.5,
) -> torch.Tensor:
    """Un-normalised target weights ``(n_sketches, n_images)``.

    A sketch's own image gets 1; another image gets ``cross_weight`` times
    the location and size similarity when its lesion has the sketch's class,
    else 0.
    """
    same = (sketch_class[:, None] == image_class[None, :]) & (image_class[None, :] > 0)
    d2 = ((sketch_centre[:, None, :] - image_centre[None, :, :]) ** 2).sum(-1)
    ratio = torch.log(
        sketch_diameter[:, None].clamp_min(1e-3) / image_diameter[None, :].clamp_min(1e-3)
    )
    w = torch.exp(-0.5 * d2 / sigma_px**2) * torch.exp(-0.5 * (ratio / log_size_sigma) ** 2)
    w = cross_weight * w * same
    own = torch.zeros_like(w)
    own[torch.arange(len(sketch_image)), sketch_image] = 1.0
    return torch.maximum(w, own)


def sketch_contrastive_loss(
    sketch_emb: torch.Tensor,
    image_emb: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Symmetric soft-target InfoNCE between sketches and images.

    Parameters
    ----------
    sketch_emb
        ``(M, D)`` unit sketch codes.
    image_emb
        ``(N, D)`` unit abnormality codes.
    targets
        ``(M, N)`` non-negative weights (:func:`sketch_image_targets`); each
        row has a positive entry.
    temperature
        Softmax temperature on cosine similarity.

    Returns
    -------
    torch.Tensor
        Scalar: mean of the two directions' cross-entropies minus the
        targets' entropies (0 for a perfect ranking).
    """
    logits = sketch_emb @ image_emb.T / temperature
    p_s = targets / targets.sum(dim=1, keepdim=True).clamp_min(1e-12)
    loss_s = -(p_s * F.log_softmax(logits, dim=1)).sum(1) + (
        p_s * torch.log(p_s.clamp_min(1e-12))
    ).sum(1)
    has = targets.sum(dim=0) > 0  # images with a lesion that some sketch draws
    t_i = targets.T[has]
    p_i = t_i / t_i.sum(dim=1, keepdim=True)
    loss_i = -(p_i * F.log_softmax(logits.T[has], dim=1)).sum(1) + (
        p_i * torch.log(p_i.clamp_min(1e-12))
    ).sum(1)
    return 0.5 * (loss_s.mean() + loss_i.mean())


@torch.no_grad()
def sketch_batch_metrics(
    sketch_emb: torch.Tensor,
    image_emb: torch.Tensor,
    sketch_image: torch.Tensor,
    clean_image: torch.Tensor,
) -> tuple[float, float]:
    """``(top1, beats_clean)`` of a batch.

    ``top1``: fraction of sketches whose most similar image is their own.
    ``beats_clean``: fraction whose own image scores above the same slice
    without a lesion (``clean_image`` gives that image's index per sketch).
    """
    sim = sketch_emb @ image_emb.T
    rows = torch.arange(len(sketch_image))
    top1 = (sim.argmax(dim=1) == sketch_image).float().mean()
    beats = (sim[rows, sketch_image] > sim[rows, clean_image]).float().mean()
    return float(top1), float(beats)


def lesion_map_targets(masks: torch.Tensor, classes: torch.Tensor, n_classes: int, side: int):
    """Per-class lesion presence ``(N, n_classes, side, side)`` in {0, 1}.

    A cell is 1 for class ``c`` when any pixel of it is inside (``>= 0.5``)
    the image's lesion of class ``c``.

    Parameters
    ----------
    masks
        ``(N, S, S)`` soft lesion masks (zeros for lesion-free images).
    classes
        ``(N,)`` label of each image's lesion (0: none).
    n_classes
        Number of lesion classes.
    side
        Side of the map (``S`` must be a multiple).
    """
    inside = (masks >= 0.5).float()
    presence = F.adaptive_max_pool2d(inside[:, None], side)[:, 0]
    onehot = F.one_hot(classes.clamp_min(0), n_classes + 1)[:, 1:].float()
    return onehot[:, :, None, None] * presence[:, None]


def lesion_map_loss(logits: torch.Tensor, targets: torch.Tensor, pos_weight: float = 5.0):
    """Binary cross-entropy of presence logits against :func:`lesion_map_targets`.

    Lesion cells are rare (a few of 64 per image, none in clean images), so
    they are up-weighted by ``pos_weight``.
    """
    weight = torch.tensor(pos_weight, dtype=logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)
