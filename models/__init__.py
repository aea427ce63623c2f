"""The Wide ResNet family. Imports nothing else of this project."""

from models.wide_resnet import (
    BasicBlock,
    WideResNet,
    allowed_depths,
    count_parameters,
    validate_architecture,
    wrn_16_4,
    wrn_28_10,
    wrn_34_10,
    wrn_name,
)

__all__ = [
    "BasicBlock",
    "WideResNet",
    "allowed_depths",
    "count_parameters",
    "validate_architecture",
    "wrn_16_4",
    "wrn_28_10",
    "wrn_34_10",
    "wrn_name",
]
