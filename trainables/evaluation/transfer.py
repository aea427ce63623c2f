"""Beyond one model: transfer of adversarial examples between models (Szegedy et al. 2014)
and how often simple input transformations destroy them (Kurakin et al. 2017)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from trainables.attacks import predict
from trainables.evaluation.adversarial import _correct, fraction

logger = logging.getLogger(__name__)

def transfer_matrix(models: Sequence[nn.Module], adversarial: Sequence[Tensor], y: Tensor,
                    batch_size: int) -> list[list[float]]:
    """m[i][j]: accuracy of model j on the adversarial inputs crafted on model i.

    The diagonal is each model's own white-box robust accuracy (Szegedy et al. 2014's
    cross-model table reads off the rest). Inputs and labels go to each model's device.
    """
    out = []
    for x_adv in adversarial:
        row = []
        for model in models:
            device = next(model.parameters()).device
            ok = predict(model, x_adv.to(device), batch_size) == y.to(device)
            row.append(fraction(ok))
        out.append(row)
    return out




def _jpeg(x: Tensor, gen: torch.Generator) -> Tensor:
    from torchvision.io import decode_jpeg, encode_jpeg

    images = (x.cpu() * 255).round().to(torch.uint8)
    decoded = decode_jpeg(encode_jpeg(list(images), quality=75))
    return torch.stack(decoded).to(x.device).float() / 255


def _blur(x: Tensor, gen: torch.Generator) -> Tensor:
    from torchvision.transforms.v2.functional import gaussian_blur

    return gaussian_blur(x, kernel_size=[3, 3], sigma=[1.0, 1.0])


def _noise(x: Tensor, gen: torch.Generator) -> Tensor:
    z = torch.randn(x.shape, generator=gen, device=gen.device, dtype=x.dtype).to(x.device)
    return (x + 0.05 * z).clamp(0, 1)


def _brightness(x: Tensor, gen: torch.Generator) -> Tensor:
    return (x + 0.1).clamp(0, 1)


def _contrast(x: Tensor, gen: torch.Generator) -> Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * 0.8 + mean).clamp(0, 1)


CORRUPTIONS: Mapping[str, tuple[str, Callable[[Tensor, torch.Generator], Tensor]]] = {
    "jpeg": ("JPEG, quality 75", _jpeg),
    "blur": ("Gaussian blur, 3x3, sigma 1", _blur),
    "noise": ("Gaussian noise, sigma 0.05", _noise),
    "brightness": ("brightness +0.1", _brightness),
    "contrast": ("contrast x0.8", _contrast),
}


def destruction_rates(model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor, *,
                      batch_size: int, seed: int = 0) -> dict[str, dict[str, Any]]:
    """How often each transformation undoes an adversarial example (Kurakin et al. 2017).

    d = #(clean correct, adversarial wrong, transformed adversarial correct) /
        #(clean correct, adversarial wrong); `clean_acc` is the accuracy on transformed
    clean inputs, for context (a transformation that breaks clean inputs "destroys" little).
    """
    clean_ok = _correct(model, x, y, batch_size)
    fooled = clean_ok & ~_correct(model, x_adv, y, batch_size)
    count = int(fooled.sum())
    out: dict[str, dict[str, Any]] = {}
    for name, (label, transform) in CORRUPTIONS.items():
        gen = torch.Generator().manual_seed(seed)
        t_adv_ok = _correct(model, transform(x_adv, gen), y, batch_size)
        t_clean_ok = _correct(model, transform(x, torch.Generator().manual_seed(seed)), y,
                              batch_size)
        destroyed = int((fooled & t_adv_ok).sum())
        out[name] = {"label": label, "adversarial": count, "destroyed": destroyed,
                     "rate": destroyed / count if count else None,
                     "clean_acc": fraction(t_clean_ok)}
    return out
