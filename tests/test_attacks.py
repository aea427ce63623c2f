"""Tests for trainables.attacks: invariants, honesty towards the model, and strength.

Everything runs on a tiny WRN-10-1 and 16x16 images (the network pools globally, and
16x16 keeps the module's tests to a few seconds on two CPU cores). The "trained" tests
share one model fitted in ~120 SGD steps to a synthetic task whose class is the images'
tint, so clean accuracy is near 100% and the attacks have something to break.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from conftest import EXACT_FLOAT32, tf32_allowed, tf32_state
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from models import WideResNet
from trainables.attacks import (
    FGSM,
    FGSMRS,
    L2PGD,
    PGD,
    Attack,
    attack_mode,
    predict,
    robust_correct,
    summed_cross_entropy,
)

NUM_CLASSES = 4
SIZE = 16  # image side, pixels
# One tint per class (RGB); the class is recoverable from the mean colour through noise.
PALETTE = torch.tensor([[0.6, 0.4, 0.4], [0.4, 0.6, 0.4], [0.4, 0.4, 0.6], [0.55, 0.55, 0.4]])
NOISE = 0.25
EPS = 16 / 255  # large enough on this task for clear gaps between the attacks

ATTACKS = (PGD, L2PGD, FGSM, FGSMRS)


def tint_task(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    y = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
    noise = NOISE * torch.randn(n, 3, SIZE, SIZE, generator=generator)
    return (PALETTE[y][:, :, None, None] + noise).clamp(0, 1), y


def tiny_model(seed: int = 0) -> WideResNet:
    torch.manual_seed(seed)
    return WideResNet(10, 1, NUM_CLASSES)


def make_attack(
    cls: type[Attack], model: nn.Module, eps: float, steps: int = 3, restarts: int = 1,
    seed: int = 0,
) -> Attack:
    """Each attack with its own signature; FGSM takes neither steps nor a generator."""
    gen = torch.Generator().manual_seed(seed)
    if cls is FGSM:
        return FGSM(model, eps)
    if cls is FGSMRS:
        return FGSMRS(model, eps, generator=gen)
    return cls(model, eps, steps=steps, restarts=restarts, generator=gen)


def mean_loss(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


def accuracy(correct: Tensor) -> float:
    return correct.float().mean().item()


@pytest.fixture(scope="module")
def untrained() -> WideResNet:
    return tiny_model(1).eval()


@pytest.fixture(scope="module")
def trained() -> tuple[WideResNet, Tensor, Tensor]:
    """WRN-10-1 after 120 SGD steps on the tint task, in eval mode, with 64 held-out images."""
    gen = torch.Generator().manual_seed(0)
    model = tiny_model(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    model.train()
    for _ in range(120):
        x, y = tint_task(32, gen)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.requires_grad_(False)
    x, y = tint_task(64, gen)
    assert accuracy(predict(model, x) == y) >= 0.9, "the fixture model did not learn the task"
    return model, x, y


# --- invariants -------------------------------------------------------------------------


def _in_ball(cls: type[Attack], x: Tensor, x_adv: Tensor, eps: float) -> bool:
    delta = (x_adv - x).flatten(1)
    if cls.norm == "l2":
        return bool((delta.norm(dim=1) <= eps * (1 + 1e-5) + 1e-6).all())
    return bool((delta.abs().amax(dim=1) <= eps + 1e-6).all())


@settings(max_examples=12, deadline=None)
@given(
    cls=st.sampled_from(ATTACKS),
    eps=st.floats(min_value=0.0, max_value=1.0),
    steps=st.integers(1, 4),
    restarts=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_adversarial_stays_in_ball_and_box(
    untrained: WideResNet, cls: type[Attack], eps: float, steps: int, restarts: int, seed: int
) -> None:
    if cls.norm == "l2":
        eps *= 8.0  # L2 radii worth testing are larger: sqrt(3*16*16) ~ 28 spans the box
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 3, SIZE, SIZE, generator=gen)
    x[0, 0] = 0.0  # pixels on the box's faces, where the clip matters
    x[1, 1] = 1.0
    y = torch.randint(0, NUM_CLASSES, (4,), generator=gen)
    attack = make_attack(cls, untrained, eps, steps, restarts, seed)

    x_adv = attack.perturb(x, y)

    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert not x_adv.requires_grad
    assert _in_ball(cls, x, x_adv, attack.eps)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.parametrize("cls", ATTACKS)
def test_every_iterate_the_model_sees_is_in_ball_and_box(cls: type[Attack]) -> None:
    model = tiny_model(3).eval()
    x = torch.rand(4, 3, SIZE, SIZE)
    x[:, 0] = 0.0  # a whole channel on each face of the box
    x[:, 1] = 1.0
    eps = 4.0 if cls is L2PGD else 0.3
    seen: list[Tensor] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    make_attack(cls, model, eps, steps=4).perturb(x, torch.arange(4))
    assert seen
    for x_seen in seen:
        assert x_seen.min() >= 0.0 and x_seen.max() <= 1.0
        assert _in_ball(cls, x, x_seen, eps)


@pytest.mark.parametrize("cls", [PGD, L2PGD])
def test_one_step_from_the_centre_has_the_norms_geometry(
    untrained: WideResNet, cls: type[Attack]
) -> None:
    x = torch.full((3, 3, SIZE, SIZE), 0.5)  # far from the box's faces
    x += 0.1 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    alpha = 0.02 if cls is PGD else 0.7
    # Unfrozen: the untrained model already gets some of these wrong, and the step is the point.
    attack = cls(untrained, 10 * alpha, steps=1, alpha=alpha, random_start=False,
                 freeze_fooled=False)
    delta = (attack.perturb(x, torch.arange(3)) - x).flatten(1)
    if cls is L2PGD:  # the step is alpha along the unit-L2 gradient
        torch.testing.assert_close(delta.norm(dim=1), torch.full((3,), alpha))
    else:  # every pixel with a gradient moves by exactly alpha
        moved = delta.abs()[delta != 0]
        torch.testing.assert_close(moved, torch.full_like(moved, alpha))
        assert moved.numel() > 0.9 * delta.numel()


def test_random_starts_are_uniform_in_the_ball(untrained: WideResNet) -> None:
    # In 2 dimensions a uniform point in the unit disc has E[r^2] = 1/2 (and in the square
    # [-1, 1]^2, E|u| = 1/2); a start on the sphere only would give E[r^2] = 1.
    points = torch.zeros(20_000, 2)
    gen = torch.Generator().manual_seed(0)
    l2 = L2PGD(untrained, 2.0, generator=gen)._random_start(points)
    linf = PGD(untrained, 2.0, generator=gen)._random_start(points)
    assert l2.norm(dim=1).max() <= 2.0 + 1e-6 and linf.abs().max() <= 2.0
    assert abs((l2 / 2.0).pow(2).sum(dim=1).mean().item() - 0.5) < 0.02
    assert abs((linf / 2.0).abs().mean().item() - 0.5) < 0.02


def test_default_loss_is_float32_cross_entropy_summed_over_the_batch() -> None:
    logits = torch.randn(6, NUM_CLASSES).bfloat16()
    y = torch.arange(6) % NUM_CLASSES
    loss = summed_cross_entropy(logits, y)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    expected = F.cross_entropy(logits.float(), y, reduction="none").sum()
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("cls", ATTACKS)
def test_zero_eps_returns_input_without_calling_the_model(
    trained: tuple[WideResNet, Tensor, Tensor], cls: type[Attack]
) -> None:
    model, x, y = trained
    calls: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, args: calls.append(1))
    try:
        x_adv = make_attack(cls, model, 0.0).perturb(x, y)
    finally:
        handle.remove()
    assert calls == []
    assert torch.equal(x_adv, x)
    assert x_adv.data_ptr() != x.data_ptr()  # a copy: the caller may modify it


@pytest.mark.parametrize("cls", ATTACKS)
def test_zero_eps_robust_accuracy_equals_clean_accuracy(
    trained: tuple[WideResNet, Tensor, Tensor], cls: type[Attack]
) -> None:
    model, x, y = trained
    y = y.clone()
    y[:5] = (y[:5] + 1) % NUM_CLASSES  # some clean-wrong examples, so the check has teeth
    clean = predict(model, x) == y
    assert torch.equal(robust_correct(model, make_attack(cls, model, 0.0), x, y), clean)


def test_perturb_leaves_its_input_alone(untrained: WideResNet) -> None:
    x = torch.rand(3, 3, SIZE, SIZE)
    before = x.clone()
    PGD(untrained, 0.1, steps=2, restarts=2).perturb(x, torch.zeros(3, dtype=torch.long))
    assert torch.equal(x, before)


# --- honesty towards the model ----------------------------------------------------------


def _prepared_model(mode: str) -> WideResNet:
    """A model with non-trivial BN statistics, one gradient held, one parameter frozen."""
    model = tiny_model(2)
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 3, SIZE, SIZE))  # move the running statistics off their init
    model.fc.weight.grad = torch.randn_like(model.fc.weight)
    model.stem.weight.requires_grad_(False)
    if mode == "eval":
        model.eval()
    elif mode == "mixed":
        model.blocks[0].eval()  # a submodule kept in eval inside a training model
    return model


@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
@pytest.mark.parametrize("cls", ATTACKS)
def test_attack_touches_no_parameter_gradient_buffer_or_flag(cls: type[Attack], mode: str) -> None:
    model = _prepared_model(mode)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    held_grad = model.fc.weight.grad.clone()
    modes = {name: m.training for name, m in model.named_modules()}
    requires = {name: p.requires_grad for name, p in model.named_parameters()}
    x, y = tint_task(6, torch.Generator().manual_seed(3))

    make_attack(cls, model, 8 / 255, steps=2, restarts=2).perturb(x, y)

    for name, p in model.named_parameters():
        if name == "fc.weight":
            assert torch.equal(p.grad, held_grad)
        else:
            assert p.grad is None, name
    after = model.state_dict()
    for key, value in state.items():  # weights, running stats and num_batches_tracked
        assert torch.equal(after[key], value), key
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert {name: p.requires_grad for name, p in model.named_parameters()} == requires
    assert requires["stem.weight"] is False and requires["fc.weight"] is True


def test_attack_runs_in_eval_mode_with_frozen_parameters() -> None:
    model = _prepared_model("train")
    seen: list[tuple[bool, bool]] = []

    def record(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        seen.append((module.training, any(p.requires_grad for p in module.parameters())))

    model.register_forward_pre_hook(record)
    x, y = tint_task(4, torch.Generator().manual_seed(4))
    PGD(model, 8 / 255, steps=3).perturb(x, y)
    assert seen == [(False, False)] * 3
    assert model.training


def test_attack_mode_restores_even_when_the_body_raises() -> None:
    model = _prepared_model("mixed")
    modes = {name: m.training for name, m in model.named_modules()}
    requires = {name: p.requires_grad for name, p in model.named_parameters()}
    with pytest.raises(RuntimeError, match="boom"), attack_mode(model):
        assert not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
        raise RuntimeError("boom")
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert {name: p.requires_grad for name, p in model.named_parameters()} == requires


def test_perturb_works_under_the_callers_no_grad(
    trained: tuple[WideResNet, Tensor, Tensor],
) -> None:
    model, x, y = trained
    free = PGD(model, EPS, steps=3, generator=torch.Generator().manual_seed(5)).perturb(x, y)
    with torch.no_grad():
        inside = PGD(model, EPS, steps=3, generator=torch.Generator().manual_seed(5)).perturb(x, y)
    assert torch.equal(free, inside)
    assert not torch.equal(free, x)


def test_perturb_under_bf16_autocast_keeps_float32_and_the_ball(
    trained: tuple[WideResNet, Tensor, Tensor],
) -> None:
    model, x, y = trained
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_adv = PGD(model, EPS, steps=3).perturb(x, y)
    assert x_adv.dtype == torch.float32
    assert _in_ball(PGD, x, x_adv, EPS) and x_adv.min() >= 0 and x_adv.max() <= 1
    assert mean_loss(model, x_adv, y) > mean_loss(model, x, y)


# --- randomness -------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [PGD, L2PGD, FGSMRS])
def test_the_generator_makes_random_starts_reproducible(
    untrained: WideResNet, cls: type[Attack]
) -> None:
    x = torch.rand(4, 3, SIZE, SIZE)
    y = torch.arange(4)
    eps = 1.0 if cls is L2PGD else 8 / 255
    first = make_attack(cls, untrained, eps, seed=7).perturb(x, y)
    again = make_attack(cls, untrained, eps, seed=7).perturb(x, y)
    other = make_attack(cls, untrained, eps, seed=8).perturb(x, y)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


# --- settings ---------------------------------------------------------------------------


def test_step_size_defaults_follow_the_papers(untrained: WideResNet) -> None:
    eps = 8 / 255
    assert math.isclose(PGD(untrained, eps, steps=7).alpha, 2.5 * eps / 7)
    assert math.isclose(L2PGD(untrained, 0.5, steps=5).alpha, 2.5 * 0.5 / 5)
    assert math.isclose(FGSMRS(untrained, eps).alpha, 1.25 * eps)
    assert math.isclose(FGSMRS(untrained, eps, alpha=0.01).alpha, 0.01)
    fgsm = FGSM(untrained, eps)
    assert math.isclose(fgsm.alpha, eps)
    assert (fgsm.steps, fgsm.restarts, fgsm.random_start) == (1, 1, False)
    assert PGD(untrained, eps, alpha=0.003).alpha == 0.003
    assert (PGD.norm, L2PGD.norm, FGSM.norm, FGSMRS.norm) == ("linf", "l2", "linf", "linf")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda m: PGD(m, -0.1), "eps"),
        (lambda m: PGD(m, float("nan")), "eps"),
        (lambda m: PGD(m, 0.1, steps=0), "steps"),
        (lambda m: PGD(m, 0.1, restarts=0), "restarts"),
        (lambda m: PGD(m, 0.1, alpha=0.0), "alpha"),
        (lambda m: FGSMRS(m, 0.1, alpha=-1.0), "alpha"),
        (lambda m: FGSM(m, -1.0), "eps"),
    ],
)
def test_bad_settings_fail_in_init_naming_the_argument(
    untrained: WideResNet, build: Callable[[nn.Module], Attack], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build(untrained)


def test_custom_loss_is_the_one_maximised(trained: tuple[WideResNet, Tensor, Tensor]) -> None:
    model, x, y = trained
    calls: list[int] = []

    def loss_fn(logits: Tensor, target: Tensor) -> Tensor:
        calls.append(1)
        return -F.cross_entropy(logits.float(), target, reduction="sum")  # helps the model

    x_adv = PGD(model, EPS, steps=4, loss_fn=loss_fn).perturb(x, y)
    assert len(calls) == 4
    assert mean_loss(model, x_adv, y) < mean_loss(model, x, y)


# --- strength on a trained model --------------------------------------------------------


def test_stronger_attacks_find_higher_loss(trained: tuple[WideResNet, Tensor, Tensor]) -> None:
    model, x, y = trained
    gen = torch.Generator().manual_seed(0)
    clean = mean_loss(model, x, y)
    fgsm = mean_loss(model, FGSM(model, EPS).perturb(x, y), y)
    # Loss ascent is the training attack's job; the evaluation one stops where it fools.
    pgd = mean_loss(model, PGD(model, EPS, steps=5, generator=gen, freeze_fooled=False).perturb(x, y), y)
    assert pgd > fgsm > clean


@pytest.mark.parametrize("cls", [PGD, L2PGD])
def test_freezing_fooled_examples_never_makes_an_example_robust(
    trained: tuple[WideResNet, Tensor, Tensor], cls: type[PGD]
) -> None:
    # Same seed: the two trajectories agree until an example is fooled, so every example the
    # last iterate fools, the frozen attack fooled too (`Band` below shows the strict case).
    model, x, y = trained
    eps = 1.0 if cls is L2PGD else EPS
    robust = {
        freeze: robust_correct(model, cls(model, eps, steps=10, alpha=eps, freeze_fooled=freeze,
                                          generator=torch.Generator().manual_seed(9)), x, y)
        for freeze in (True, False)
    }
    assert not (robust[True] & ~robust[False]).any()
    assert 0 < robust[True].sum() < len(y)  # both kinds of example are there


@pytest.mark.parametrize("cls", ATTACKS)
def test_robust_correct_is_the_attacks_outcome_on_the_clean_correct_examples(
    trained: tuple[WideResNet, Tensor, Tensor], cls: type[Attack]
) -> None:
    model, x, y = trained
    y = y.clone()
    y[::5] = (y[::5] + 1) % NUM_CLASSES  # some clean-wrong examples: they must stay not robust
    eps = 1.0 if cls is L2PGD else EPS
    clean = predict(model, x) == y
    robust = robust_correct(model, make_attack(cls, model, eps, steps=5, seed=4), x, y)
    # The same attack (same seed, same inputs) run by hand on the clean-correct examples.
    x_adv = make_attack(cls, model, eps, steps=5, seed=4).perturb(x[clean], y[clean])
    expected = clean.clone()
    expected[clean] = predict(model, x_adv) == y[clean]
    assert torch.equal(robust, expected)
    assert robust.sum() < clean.sum()  # at this eps every attack breaks some of this model


def test_more_restarts_never_raise_robust_accuracy(
    trained: tuple[WideResNet, Tensor, Tensor],
) -> None:
    model, x, y = trained
    robust = [
        robust_correct(model, PGD(model, EPS, steps=3, restarts=r,
                                  generator=torch.Generator().manual_seed(11)), x, y)
        for r in (1, 2, 4)
    ]
    # Same seed: the first restart is shared, later ones only re-attack survivors.
    assert not (robust[1] & ~robust[0]).any()
    assert not (robust[2] & ~robust[1]).any()
    assert robust[0].sum() > 0  # survivors exist, so the restarts had work to do


def test_restarts_keep_the_first_adversarial_and_reattack_the_rest(
    trained: tuple[WideResNet, Tensor, Tensor],
) -> None:
    model, x, y = trained
    one = PGD(model, EPS, steps=3, restarts=1, generator=torch.Generator().manual_seed(3))
    two = PGD(model, EPS, steps=3, restarts=2, generator=torch.Generator().manual_seed(3))
    adv_one, adv_two = one.perturb(x, y), two.perturb(x, y)
    fooled = predict(model, adv_one) != y
    assert fooled.any() and (~fooled).any()
    assert torch.equal(adv_two[fooled], adv_one[fooled])
    changed = (adv_two != adv_one).flatten(1).any(dim=1)
    assert changed[~fooled].all()


def test_robust_accuracy_collapses_at_a_huge_eps(
    trained: tuple[WideResNet, Tensor, Tensor],
) -> None:
    model, x, y = trained
    attack = PGD(model, 0.5, steps=5, generator=torch.Generator().manual_seed(0))
    assert accuracy(robust_correct(model, attack, x, y)) <= 1 / NUM_CLASSES


# --- the first adversarial iterate is kept -----------------------------------------------


class Band(nn.Module):
    """Three classes scored on the mean pixel t. Class 1 wins only while t is inside a band
    (a step function: no gradient); class 2's logit rises with t but never wins. The
    cross-entropy of label 0 therefore rises with t everywhere, so PGD walks t upwards:
    into the band (the model is fooled) and out of it again (correct again)."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: Tensor) -> Tensor:
        t = x.flatten(1).mean(dim=1)
        inside = ((t > self.low) & (t < self.high)).float()
        return torch.stack([torch.zeros_like(t), 5 * inside - 2.5, 10 * (t - 1.5)], dim=1)


def _band_case(cls: type[PGD]) -> tuple[Band, Tensor, Tensor, float, float]:
    """Grey images of label 0, a band a model steps into after 2 of 10 steps and leaves
    after 3 (alpha = eps / 4), and the mean-pixel shift per unit of eps."""
    x = torch.full((4, 3, 32, 32), 0.5)
    unit = 1.0 if cls is PGD else 1.0 / math.sqrt(x[0].numel())  # an L2 step spreads evenly
    eps = 8 / 255 if cls is PGD else 2.0
    shift = eps * unit
    return Band(0.5 + 0.3 * shift, 0.5 + 0.55 * shift), x, torch.zeros(4, dtype=torch.long), eps, shift


@pytest.mark.parametrize("cls", [PGD, L2PGD])
def test_pgd_keeps_the_first_adversarial_iterate(cls: type[PGD]) -> None:
    model, x, y, eps, shift = _band_case(cls)
    attack = cls(model, eps, steps=10, random_start=False)
    x_adv = attack.perturb(x, y)
    assert (predict(model, x_adv) != y).all()  # fooled at step 2: that iterate is kept
    moved = (x_adv - x).flatten(1).mean(dim=1)
    torch.testing.assert_close(moved, torch.full((4,), 0.5 * shift))
    assert not robust_correct(model, attack, x, y).any()


def test_pgd_with_random_start_keeps_the_first_adversarial_iterate() -> None:
    model, x, y, eps, _ = _band_case(PGD)  # as the validation and test attacks run it
    attack = PGD(model, eps, steps=10, generator=torch.Generator().manual_seed(0))
    assert not robust_correct(model, attack, x, y).any()


@pytest.mark.parametrize("cls", [PGD, L2PGD])
def test_a_training_attack_keeps_ascending_the_loss(cls: type[PGD]) -> None:
    model, x, y, eps, shift = _band_case(cls)
    x_adv = cls(model, eps, steps=10, random_start=False, freeze_fooled=False).perturb(x, y)
    assert (predict(model, x_adv) == y).all()  # walked through the band and out again
    torch.testing.assert_close((x_adv - x).flatten(1).mean(dim=1), torch.full((4,), shift))


def test_single_step_attacks_always_take_their_step() -> None:
    # FGSM and FGSM-RS train models: an example already misclassified still gets its step.
    model, x, y, eps, _ = _band_case(PGD)
    model.low, model.high = 0.0, 1.0  # every input is misclassified
    for attack in (FGSM(model, eps), FGSMRS(model, eps, generator=torch.Generator().manual_seed(0))):
        assert attack.freeze_fooled is False
        assert not torch.equal(attack.perturb(x, y), x)


# --- exact float32: no TF32 inside attacks and predictions --------------------------------


def test_attacks_and_predictions_run_without_tf32_and_restore_the_setting() -> None:
    model = tiny_model(5).eval()
    seen: list[tuple[object, ...]] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(tf32_state()))
    x, y = tint_task(4, torch.Generator().manual_seed(6))
    with tf32_allowed() as caller:
        for cls in ATTACKS:
            robust_correct(model, make_attack(cls, model, EPS), x, y)
        predict(model, x)
        assert tf32_state() == caller  # restored after each call
    assert len(seen) > 4 and set(seen) == {EXACT_FLOAT32}


# --- predict / robust_correct -----------------------------------------------------------


def test_predict_is_batched_in_eval_mode_and_restores_the_flag() -> None:
    model = _prepared_model("train")
    x = torch.rand(7, 3, SIZE, SIZE)
    stats = model.blocks[0].bn1.running_mean.clone()
    preds = predict(model, x, batch_size=3)
    assert model.training
    assert torch.equal(model.blocks[0].bn1.running_mean, stats)
    assert preds.shape == (7,) and preds.dtype == torch.long
    with attack_mode(model), torch.no_grad():
        expected = model(x).argmax(dim=1)
    assert torch.equal(preds, expected)
    assert predict(model, x[:0]).shape == (0,)


class _Recorder(Attack):
    """An identity 'attack' that remembers which labels it was asked to attack."""

    norm = "linf"

    def __init__(self, model: nn.Module) -> None:
        self.model, self.eps, self.seen = model, 0.0, []

    def perturb(self, x: Tensor, y: Tensor) -> Tensor:
        self.seen.append(len(y))
        return x.clone()


def test_robust_correct_attacks_only_clean_correct_examples_in_batches(
    trained: tuple[WideResNet, Tensor, Tensor],
) -> None:
    model, x, y = trained
    y = y.clone()
    y[::4] = (y[::4] + 1) % NUM_CLASSES  # a quarter of the examples are clean-wrong
    clean = predict(model, x) == y
    recorder = _Recorder(model)

    result = robust_correct(model, recorder, x, y, batch_size=10)

    assert result.shape == (len(y),) and result.dtype == torch.bool
    assert torch.equal(result, clean)
    assert not result[::4].any()
    assert len(recorder.seen) == math.ceil(len(y) / 10)
    assert sum(recorder.seen) == int(clean.sum())

    attacked = robust_correct(model, PGD(model, EPS, steps=3), x, y, batch_size=10)
    assert not (attacked & ~clean).any()


# --- GPU ---------------------------------------------------------------------------------


@pytest.mark.gpu
def test_pgd_inner_loop_has_no_host_sync_under_cuda_bf16_autocast() -> None:
    model = tiny_model(0).cuda().eval()
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.rand(16, 3, SIZE, SIZE, device="cuda", generator=gen)
    y = torch.randint(0, NUM_CLASSES, (16,), device="cuda", generator=gen)
    attack = PGD(model, EPS, steps=4, generator=gen)
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            x_adv = attack.perturb(x, y)  # restarts=1: no sync at all
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert x_adv.dtype == torch.float32 and x_adv.device == x.device
    assert _in_ball(PGD, x, x_adv, EPS) and x_adv.min() >= 0 and x_adv.max() <= 1
