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

__all__ = [
    "BasicBlock",
    "WideResNet",
    "allowed_depths",
    "count_parameters",
    "forward_flops",
    "validate_architecture",
    "wrn_16_4",
    "wrn_28_10",
    "wrn_34_10",
    "wrn_name",
]

_STAGE_WIDTHS = (16, 32, 64)  # channels per stage before multiplying by the width k
_STAGE_STRIDES = (1, 2, 2)
_STEM_CHANNELS = 16
_MAX_DEPTH = 1000

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)


def allowed_depths(limit: int = 40) -> list[int]:
    """The valid WRN depths up to `limit` (for error messages)."""
    return list(range(10, limit + 1, 6))


def validate_architecture(depth: int, width: int) -> None:
    """Raise ValueError with one readable line when (depth, width) is not a WRN."""
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ValueError(f"depth must be an integer 6n+4, but got {depth!r}")
    if depth < 10 or (depth - 4) % 6 != 0 or depth > _MAX_DEPTH:
        shown = ", ".join(str(d) for d in allowed_depths())
        raise ValueError(
            f"depth must be 6n+4 with n >= 1 ({shown}, ...), but got {depth}"
        )
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be an integer >= 1, but got {width!r}")


def wrn_name(depth: int, width: int) -> str:
    """The conventional name, e.g. WRN-28-10."""
    return f"WRN-{depth}-{width}"


def _stage_plan(depth: int, width: int) -> list[tuple[int, int, int]]:
    """(in_channels, out_channels, stride) for every block, in order."""
    blocks_per_stage = (depth - 4) // 6
    plan = []
    in_ch = _STEM_CHANNELS
    for base, stride in zip(_STAGE_WIDTHS, _STAGE_STRIDES, strict=True):
        out_ch = base * width
        for i in range(blocks_per_stage):
            plan.append((in_ch, out_ch, stride if i == 0 else 1))
            in_ch = out_ch
    return plan


def count_parameters(depth: int, width: int, num_classes: int = 10) -> int:
    """Exact trainable-parameter count of WRN-depth-width, without building it.

    The search needs the size of configurations it has not trained (for the space's
    range and for the Pareto objective), so this mirrors the modules below exactly;
    a test checks it against the built model for many (depth, width) pairs.
    """
    validate_architecture(depth, width)
    total = 3 * _STEM_CHANNELS * 9  # stem conv, no bias
    for in_ch, out_ch, _ in _stage_plan(depth, width):
        total += 2 * in_ch + in_ch * out_ch * 9  # bn1, conv1
        total += 2 * out_ch + out_ch * out_ch * 9  # bn2, conv2
        if in_ch != out_ch:
            total += in_ch * out_ch  # 1x1 shortcut
    final = _STAGE_WIDTHS[-1] * width
    total += 2 * final  # final bn
    total += final * num_classes + num_classes  # classifier
    return total


def forward_flops(depth: int, width: int, num_classes: int = 10, image_size: int = 32) -> int:
    """Forward FLOPs of one image through WRN-depth-width (2 per multiply-add), without building it.

    Convolutions and the classifier only: BatchNorm, ReLU and the residual additions are a
    fraction of a percent. The search uses it to predict a trial's cost before it starts
    (`trainables.cost`); a test checks it against torch's FlopCounterMode.
    """
    validate_architecture(depth, width)
    size = image_size
    macs = size * size * 3 * _STEM_CHANNELS * 9  # stem conv
    for in_ch, out_ch, stride in _stage_plan(depth, width):
        size //= stride
        macs += size * size * (in_ch * out_ch * 9 + out_ch * out_ch * 9)  # conv1, conv2
        if in_ch != out_ch:
            macs += size * size * in_ch * out_ch  # 1x1 shortcut
    macs += _STAGE_WIDTHS[-1] * width * num_classes  # classifier
    return 2 * macs


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
        self.stem = nn.Conv2d(3, _STEM_CHANNELS, 3, 1, 1, bias=False)
        self.blocks = nn.Sequential(
            *(BasicBlock(i, o, s, dropout) for i, o, s in _stage_plan(depth, width))
        )
        final = _STAGE_WIDTHS[-1] * width
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
