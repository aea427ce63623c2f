"""The Wide ResNet family. Imports nothing else of this project.

The architecture as data (`models.architecture`: names, validation, sizes, FLOPs) needs no
torch, so a spec can be validated without importing it; the modules (`models.wide_resnet`)
are imported the first time one is asked for.
"""

from typing import Any

from models.architecture import *  # noqa: F403
from models.architecture import __all__ as _ARCHITECTURE

_MODULES = ("BasicBlock", "WideResNet", "wrn_16_4", "wrn_28_10", "wrn_34_10")
__all__ = [*_ARCHITECTURE, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        from models import wide_resnet

        return getattr(wide_resnet, name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
