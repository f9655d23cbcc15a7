"""The slice-embedding network: a small CPU-friendly CNN.

Four stride-2 stages of conv-BN-ReLU (two convolutions each) turn a
``C x 128 x 128`` slice into a ``128 x 8 x 8`` feature map; global average
pooling and a linear head give an L2-normalised embedding. The 8 x 8 map is
returned too (the app uses it to show *where* two slices agree). About 45 M
multiply-adds per slice, so a laptop CPU embeds hundreds of slices a second.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EmbeddingNet", "NetConfig"]


@dataclass(frozen=True)
class NetConfig:
    """Shape of the network.

    Parameters
    ----------
    in_channels
        Input channels (one per HU window).
    widths
        Output channels of each stride-2 stage.
    embedding_dim
        Length of the embedding vector.
    """

    in_channels: int = 3
    widths: tuple[int, ...] = (16, 32, 64, 128)
    embedding_dim: int = 96

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class EmbeddingNet(nn.Module):
    """CNN mapping ``(N, C, S, S)`` slices to ``(embedding, features)``.

    ``embedding`` is ``(N, D)`` with unit L2 norm; ``features`` is the last
    convolutional map ``(N, K, S/16, S/16)``, the input of the global average
    pooling.
    """

    def __init__(self, config: NetConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetConfig()
        layers: list[nn.Module] = []
        cin = self.config.in_channels
        for width in self.config.widths:
            layers += [_conv_bn_relu(cin, width, 2), _conv_bn_relu(width, width, 1)]
            cin = width
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Linear(cin, self.config.embedding_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        pooled = features.mean(dim=(2, 3))
        embedding = F.normalize(self.head(pooled), dim=1, eps=1e-8)
        return embedding, features
