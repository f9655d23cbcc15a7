"""On-the-fly 2-D augmentation of preprocessed slices (PyTorch, batched).

The simulator already varies scans the way real follow-ups vary; these cheap
per-image perturbations add what a bank of a few dozen scans cannot: endless
small in-plane shifts, rotations and scalings (patient positioning), HU
offsets (calibration, contrast), noise and blur or sharpening
(reconstruction kernels). Only four training volumes exist, so this is what
keeps the network from memorising them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from app.core.imaging import AIR_HU
from app.ml.runtime.preprocess import InputSpec

__all__ = ["AugmentConfig", "augment"]


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random perturbations (uniform unless stated)."""

    rotation_deg: float = 8.0
    scale: float = 0.10
    anisotropy: float = 0.03
    shift_px: float = 6.0
    hu_offset_sd: float = 20.0  # Gaussian, HU
    gain: float = 0.05
    noise_hu_max: float = 25.0
    blur_max: float = 1.0  # 1 = full 3x3 box blur; the range goes as far negative/2 (sharpen)


def _air_levels(spec: InputSpec) -> torch.Tensor:
    return torch.tensor(
        [min(max((AIR_HU - w.lower) / w.width, 0.0), 1.0) for w in spec.windows],
        dtype=torch.float32,
    ).view(1, -1, 1, 1)


def augment(
    images: torch.Tensor,
    spec: InputSpec,
    generator: torch.Generator,
    config: AugmentConfig | None = None,
) -> torch.Tensor:
    """Randomly perturb a batch of preprocessed slices.

    Parameters
    ----------
    images
        ``uint8`` ``(N, C, S, S)`` (preprocessed x 255) or float in [0, 1].
    spec
        The preprocessing spec (window widths turn HU perturbations into
        per-channel amounts; air fills the borders an affine map uncovers).
    generator
        Random stream; the output is a deterministic function of it.
    config
        Ranges; defaults when ``None``.

    Returns
    -------
    torch.Tensor
        ``float32`` ``(N, C, S, S)`` in [0, 1].
    """
    cfg = config or AugmentConfig()
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    n, c = x.shape[:2]

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=generator)

    widths = torch.tensor([w.width for w in spec.windows], dtype=torch.float32).view(1, c, 1, 1)

    # Geometry: one affine per image; the border it uncovers is air.
    angle = uniform(-cfg.rotation_deg, cfg.rotation_deg, n) * (math.pi / 180.0)
    scale = 1.0 + uniform(-cfg.scale, cfg.scale, n)
    aniso = 1.0 + uniform(-cfg.anisotropy, cfg.anisotropy, n)
    sx, sy = scale * aniso, scale / aniso
    size = x.shape[-1]
    shift = uniform(-cfg.shift_px, cfg.shift_px, n, 2) * (2.0 / size)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([cos / sx, -sin / sx, shift[:, 0]], dim=1),
            torch.stack([sin / sy, cos / sy, shift[:, 1]], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    air = _air_levels(spec)
    x = F.grid_sample(x - air, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = x + air

    # Blur (alpha > 0) or sharpen (alpha < 0) towards a 3x3 box filter.
    alpha = uniform(-cfg.blur_max / 2, cfg.blur_max, n).view(n, 1, 1, 1)
    blurred = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    x = x + alpha * (blurred - x)

    # HU offset and gain, expressed per window.
    offset = torch.randn(n, 1, 1, 1, generator=generator) * cfg.hu_offset_sd / widths
    gain = 1.0 + uniform(-cfg.gain, cfg.gain, n).view(n, 1, 1, 1)
    x = (x - 0.5) * gain + 0.5 + offset

    # Noise: one HU level per image, converted per window.
    sigma = uniform(0.0, cfg.noise_hu_max, n).view(n, 1, 1, 1) / widths
    x = x + sigma * torch.randn(x.shape, generator=generator)
    return x.clamp_(0.0, 1.0)
