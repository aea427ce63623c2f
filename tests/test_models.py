"""The WRN family: published parameter counts, counts without building, validation."""

from __future__ import annotations

import pytest
import torch

from models import WideResNet, allowed_depths, count_parameters, validate_architecture, wrn_name


def _built_count(depth: int, width: int, num_classes: int = 10) -> int:
    model = WideResNet(depth, width, num_classes)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(("depth", "width", "published"), [(28, 10, 36_479_194), (16, 8, 10_961_370)])
def test_published_parameter_counts(depth: int, width: int, published: int) -> None:
    assert count_parameters(depth, width) == published
    assert _built_count(depth, width) == published


@pytest.mark.parametrize("depth", [10, 16, 22, 40])
@pytest.mark.parametrize("width", [1, 2, 3, 5])
def test_count_without_building_matches_the_model(depth: int, width: int) -> None:
    assert count_parameters(depth, width, 100) == _built_count(depth, width, 100)


def test_forward_shape_and_inputs_in_pixel_units() -> None:
    model = WideResNet(10, 1, 7).eval()
    out = model(torch.rand(3, 3, 32, 32))
    assert out.shape == (3, 7)
    # normalisation is a buffer, not a parameter: attacks see [0, 1] pixels
    names = {n for n, _ in model.named_parameters()}
    assert "mean" not in names and "std" not in names
    assert {n for n, _ in model.named_buffers()} >= {"mean", "std"}


def test_depth_35_fails_with_one_line_naming_allowed_depths() -> None:
    with pytest.raises(ValueError) as info:
        WideResNet(35, 4)
    message = str(info.value)
    assert "\n" not in message and "35" in message
    for depth in allowed_depths():
        assert str(depth) in message


@pytest.mark.parametrize("depth", [0, 4, 9, 11, 15, 17, -2, 1.5, "16", True])
def test_bad_depths_are_rejected(depth: object) -> None:
    with pytest.raises(ValueError, match="depth"):
        validate_architecture(depth, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("width", [0, -1, 1.5, "2", False])
def test_bad_widths_are_rejected(width: object) -> None:
    with pytest.raises(ValueError, match="width"):
        validate_architecture(16, width)  # type: ignore[arg-type]


def test_names_and_shortcuts() -> None:
    assert wrn_name(28, 10) == "WRN-28-10"
    assert WideResNet(16, 2).name == "WRN-16-2"
    # width 1: the first stage keeps 16 channels, so its first block has no 1x1 shortcut
    first = WideResNet(10, 1).blocks[0]
    assert first.shortcut is None
    assert WideResNet(10, 2).blocks[0].shortcut is not None
