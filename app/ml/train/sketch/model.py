"""The two sketch-query encoders: abnormality (CT slice) and sketch (drawn labels).

Both map a ``3 x 128 x 128`` model-frame image to a 64-d unit vector, and a
sketch should land near the slices that show what it draws *where* it draws
it. Global average pooling would throw the "where" away, so the head keeps the
8 x 8 map: a 1x1 convolution squeezes it to one channel per lesion class,
whose sigmoids are flattened (position-aware) and fed to a small MLP. The
squeezed channels are lesion-presence logits per class and 8 x 8 cell;
training supervises them (:meth:`_Encoder.forward_with_maps`), which makes the
network find small, subtle lesions long before the contrastive loss alone
would. Nothing else reaches the embedding: globally pooled features carry
mostly anatomy, which a sketch cannot know, and with them the code of a
slice with a lesion stayed almost identical to its lesion-free twin's.

* :class:`AbnormalityNet` reads the windowed CT slice (``prepare_slices``
  output): four stride-2 stages (16-32-48-64; two conv-BN-ReLU in the first
  two, one in the last two) and a 1x1 layer, so a map cell sees a 138 mm
  neighbourhood rather than the whole slice.
* :class:`SketchNet` reads class coverage (``labels_to_input`` output), far
  simpler content, so one conv per stage (8-16-32-32).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AbnormalityNet", "EncoderConfig", "SketchNet", "abnormality_config", "sketch_config"]


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of one encoder.

    Parameters
    ----------
    in_channels
        Input channels.
    widths
        Output channels of each stride-2 stage (four stages: 128 -> 8 px).
    convs_per_stage
        Convolutions per stage (the first has stride 2): one number for all
        stages, or one per stage. Fewer 3x3 convolutions in the late stages
        keep each map cell's receptive field local.
    pointwise
        1x1 conv-BN-ReLU layers (of the last width) after the stages: depth
        for the per-cell decision without widening what a cell sees.
    squeeze
        Channels of the position-keeping 1x1 convolution on the last map; the
        first three (one per lesion class) are supervised as lesion presence.
    hidden
        Width of the head's hidden layer.
    embedding_dim
        Length of the embedding.
    input_size
        Input side in pixels (fixes the flattened map's size).
    """

    in_channels: int = 3
    widths: tuple[int, ...] = (16, 32, 48, 64)
    convs_per_stage: int | tuple[int, ...] = 2
    pointwise: int = 0
    squeeze: int = 3
    hidden: int = 128
    embedding_dim: int = 64
    input_size: int = 128

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EncoderConfig:
        data = dict(data)
        data["widths"] = tuple(data["widths"])
        if isinstance(data.get("convs_per_stage"), list):
            data["convs_per_stage"] = tuple(data["convs_per_stage"])
        return cls(**data)

    def stage_convs(self) -> tuple[int, ...]:
        """Convolutions in each stage."""
        if isinstance(self.convs_per_stage, int):
            return (self.convs_per_stage,) * len(self.widths)
        if len(self.convs_per_stage) != len(self.widths):
            raise ValueError("convs_per_stage needs one count per stage")
        return tuple(self.convs_per_stage)

    def receptive_field(self) -> int:
        """Side (input pixels) of what one cell of the last map sees."""
        rf, jump = 1, 1
        for n in self.stage_convs():
            for i in range(n):
                rf += 2 * jump
                if i == 0:
                    jump *= 2
        return rf


def abnormality_config(input_size: int = 128) -> EncoderConfig:
    """Default :class:`AbnormalityNet` shape.

    Each cell of its 8 x 8 map sees 43 px (138 mm) around it, not the whole
    slice (91 px with two convolutions in every stage). Trained on four bodies,
    a cell that saw the whole slice learnt those bodies' normal look and fired
    on the unfamiliar anatomy of new patients; local evidence (a blob that
    is not a vessel, darker than the liver around it) carries over.
    """
    return EncoderConfig(convs_per_stage=(2, 2, 1, 1), pointwise=1, input_size=input_size)


def sketch_config(input_size: int = 128) -> EncoderConfig:
    """Default :class:`SketchNet` shape (lighter: a sketch is a few blobs)."""
    return EncoderConfig(widths=(8, 16, 32, 32), convs_per_stage=1, input_size=input_size)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _pointwise_bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


class _Encoder(nn.Module):
    """Conv stages -> squeezed map (sigmoid, flattened) -> MLP -> unit vector."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        cin = config.in_channels
        for width, n_convs in zip(config.widths, config.stage_convs(), strict=True):
            layers.append(_conv_bn_relu(cin, width, 2))
            layers += [_conv_bn_relu(width, width, 1) for _ in range(n_convs - 1)]
            cin = width
        for _ in range(config.pointwise):
            layers.append(_pointwise_bn_relu(cin))
        self.backbone = nn.Sequential(*layers)
        side = config.input_size // 2 ** len(config.widths)
        if side < 1:
            raise ValueError(f"input size {config.input_size} is too small for the stages")
        self.squeeze = nn.Conv2d(cin, config.squeeze, 1)
        self.head = nn.Sequential(
            nn.Linear(config.squeeze * side * side, config.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(config.hidden, config.embedding_dim),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_with_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embedding (N, D), squeezed map logits (N, squeeze, h, w))``."""
        features = self.backbone(x)
        maps = self.squeeze(features)
        where = torch.flatten(torch.sigmoid(maps), 1)
        embedding = F.normalize(self.head(where), dim=1, eps=1e-8)
        return embedding, maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_maps(x)[0]


class AbnormalityNet(_Encoder):
    """``(N, 3, S, S)`` windowed CT slices -> ``(N, D)`` unit abnormality codes."""

    def __init__(self, config: EncoderConfig | None = None) -> None:
        super().__init__(config or abnormality_config())


class SketchNet(_Encoder):
    """``(N, 3, S, S)`` class-coverage sketches -> ``(N, D)`` unit sketch codes."""

    def __init__(self, config: EncoderConfig | None = None) -> None:
        super().__init__(config or sketch_config())
