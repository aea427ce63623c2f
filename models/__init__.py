"""The Wide ResNet family. Imports nothing else of this project."""

from models.wide_resnet import *  # noqa: F403
from models.wide_resnet import __all__  # noqa: F401
