"""Wide Residual Networks (Zagoruyko & Komodakis, 2016) for 32x32 images.

WRN-d-k: depth d = 6n + 4 (n pre-activation basic blocks in each of three stages),
stages of 16k, 32k and 64k channels, a 1x1 convolution on the shortcut wherever the
channel count changes, then BN, ReLU, global average pooling and a linear classifier.

Input normalisation lives inside the network (a fixed buffer, not a parameter), so the
model takes pixels in [0, 1] and attack budgets are in pixel units.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from models.architecture import STAGE_WIDTHS, STEM_CHANNELS, stage_plan, validate_architecture, wrn_name

__all__ = ["BasicBlock", "WideResNet", "wrn_16_4", "wrn_28_10", "wrn_34_10"]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)


class BasicBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module | None = None
        if in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(x))
        # Where channels change, the shortcut sees the pre-activated input (as in the
        # reference implementation); otherwise it is the identity on the raw input.
        residual = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.dropout(self.relu(self.bn2(out)))
        return self.conv2(out) + residual


class WideResNet(nn.Module):
    """WRN-depth-width for 32x32 inputs in [0, 1].

    Args:
        depth: 6n + 4 for n >= 1 (10, 16, 22, 28, 34, 40, ...).
        width: the widening factor k >= 1.
        num_classes: size of the classifier.
        dropout: dropout rate between the convolutions of each block.
        mean, std: per-channel input normalisation applied inside the model.
    """

    def __init__(
        self,
        depth: int = 28,
        width: int = 10,
        num_classes: int = 10,
        *,
        dropout: float = 0.0,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
    ) -> None:
        super().__init__()
        validate_architecture(depth, width)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, but got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), but got {dropout}")
        self.depth, self.width, self.num_classes = depth, width, num_classes
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, STEM_CHANNELS, 3, 1, 1, bias=False)
        self.blocks = nn.Sequential(
            *(BasicBlock(i, o, s, dropout) for i, o, s in stage_plan(depth, width))
        )
        final = STAGE_WIDTHS[-1] * width
        self.bn = nn.BatchNorm2d(final)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(final, num_classes)

        # Initialisation of the reference WRN code (szagoruyko/wide-residual-networks):
        # He-normal convolutions (fan_out), unit BN, zero biases.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @property
    def name(self) -> str:
        return wrn_name(self.depth, self.width)

    def forward(self, x: Tensor) -> Tensor:
        x = (x - self.mean) / self.std
        x = self.blocks(self.stem(x))
        x = self.pool(self.relu(self.bn(x)))
        return self.fc(torch.flatten(x, 1))


def wrn_16_4(num_classes: int = 10) -> WideResNet:
    return WideResNet(16, 4, num_classes)


def wrn_28_10(num_classes: int = 10) -> WideResNet:
    return WideResNet(28, 10, num_classes)


def wrn_34_10(num_classes: int = 10) -> WideResNet:
    return WideResNet(34, 10, num_classes)
