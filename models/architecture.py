"""The WRN family as data: valid depths and widths, names, exact sizes and FLOPs, no torch.

WRN-d-k: depth d = 6n + 4 (n pre-activation basic blocks in each of three stages), stages
of 16k, 32k and 64k channels, a 1x1 convolution on the shortcut wherever the channel count
changes. The search needs the size and cost of configurations it has not built (and a spec
is validated before torch is imported), so these mirror `models.wide_resnet` exactly; the
tests check them against the built model and torch's FLOP counter.
"""

from __future__ import annotations

__all__ = [
    "allowed_depths",
    "count_parameters",
    "forward_flops",
    "stage_plan",
    "validate_architecture",
    "wrn_name",
]

STAGE_WIDTHS = (16, 32, 64)  # channels per stage before multiplying by the width k
_STAGE_STRIDES = (1, 2, 2)
STEM_CHANNELS = 16
_MAX_DEPTH = 1000



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


def stage_plan(depth: int, width: int) -> list[tuple[int, int, int]]:
    """(in_channels, out_channels, stride) for every block, in order."""
    blocks_per_stage = (depth - 4) // 6
    plan = []
    in_ch = STEM_CHANNELS
    for base, stride in zip(STAGE_WIDTHS, _STAGE_STRIDES, strict=True):
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
    total = 3 * STEM_CHANNELS * 9  # stem conv, no bias
    for in_ch, out_ch, _ in stage_plan(depth, width):
        total += 2 * in_ch + in_ch * out_ch * 9  # bn1, conv1
        total += 2 * out_ch + out_ch * out_ch * 9  # bn2, conv2
        if in_ch != out_ch:
            total += in_ch * out_ch  # 1x1 shortcut
    final = STAGE_WIDTHS[-1] * width
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
    macs = size * size * 3 * STEM_CHANNELS * 9  # stem conv
    for in_ch, out_ch, stride in stage_plan(depth, width):
        size //= stride
        macs += size * size * (in_ch * out_ch * 9 + out_ch * out_ch * 9)  # conv1, conv2
        if in_ch != out_ch:
            macs += size * size * in_ch * out_ch  # 1x1 shortcut
    macs += STAGE_WIDTHS[-1] * width * num_classes  # classifier
    return 2 * macs
