"""One adversarial training run, epoch by epoch: the piece both `train` and the Ray trial drive.

The `Trainer` owns the model, optimiser, LR schedule, data on the device and the random
generator; `run_epoch()` trains one epoch, evaluates on the validation split and returns
one metrics row (keys from `trainables.metrics`). Its whole state round-trips through
`state_dict()` so a resumed run continues the same run, batch order included.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from models import WideResNet, count_parameters, wrn_name
from trainables import formats
from trainables import metrics as M
from trainables.attacks import FGSM, FGSMRS, L2PGD, PGD, Attack, predict, robust_correct
from trainables.config import ConfigError, TrainingConfig, TrialConfig, hyperparameters
from trainables.data import DatasetSplits, load_dataset
from trainables.loader import BatchLoader

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; continuing would only produce garbage."""


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without it is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' is not allowed; no CUDA device is visible here (use auto or cpu)")
    return torch.device(name)


def _pgd_class(norm: str) -> type[PGD]:
    return L2PGD if norm == "l2" else PGD


def training_attack(model: nn.Module, cfg: TrainingConfig, generator: torch.Generator) -> Attack | None:
    """The attack that makes the training inputs of each method (None for clean training).

    Training PGD keeps ascending the loss after an example is fooled (Madry et al.; Rice
    et al. train this way too); only the figures freeze fooled examples.
    """
    if cfg.method == "clean" or cfg.eps == 0:
        return None
    if cfg.method == "pgd":
        return _pgd_class(cfg.norm)(model, cfg.eps, steps=cfg.steps, alpha=cfg.step_size,
                                    generator=generator, freeze_fooled=False)
    if cfg.method == "fgsm-rs":
        return FGSMRS(model, cfg.eps, alpha=cfg.step_size, generator=generator)
    return FGSM(model, cfg.eps)  # fgsm-mix


def _lr_lambda(cfg: TrainingConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the peak LR at optimiser step t (linear warm-up, then the schedule)."""
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1.0, total - warmup)
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        # piecewise (Madry et al.; Rice et al.): x0.1 at 50% and again at 75% of training
        return 1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01

    return factor


def build_lr_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainingConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule; one-cycle is torchvision-recipe style (Wong et al. 2020 cyclic LR)."""
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
            pct_start=0.4, anneal_strategy="linear", cycle_momentum=False,
            div_factor=25.0, final_div_factor=1e3,
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, steps_per_epoch))


def _set_threads(threads: int | None) -> None:
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class _EpochPart:
    """An epoch under way: its batch iterator and running sums (kept on the device)."""

    def __init__(self, batches: Iterator[tuple[Tensor, Tensor]], device: torch.device) -> None:
        self.batches_left = batches
        self.batches = 0
        self.seen = 0
        self.elapsed = 0.0
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)


class Trainer:
    """Adversarial training of one WRN; see the module docstring."""

    def __init__(self, cfg: TrialConfig, data: DatasetSplits | None = None) -> None:
        self.cfg = cfg
        _set_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.data = data if data is not None else load_dataset(cfg.data)
        tcfg = cfg.training
        torch.manual_seed(tcfg.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(tcfg.seed)
        self.model = WideResNet(cfg.model.depth, cfg.model.width, cfg.data.num_classes,
                                dropout=cfg.model.dropout).to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net: nn.Module = self.model
        if cfg.compile and self.device.type == "cuda":
            self.net = torch.compile(self.model)
        self.params = count_parameters(cfg.model.depth, cfg.model.width, cfg.data.num_classes)
        self.train_loader = BatchLoader(self.data.train, tcfg.batch_size, device=self.device,
                                        shuffle=True, augment=True, drop_last=True,
                                        generator=self.generator)
        if len(self.train_loader) == 0:
            raise ConfigError(f"training.batch_size: {tcfg.batch_size} is not allowed; the "
                              f"training split has only {self.train_loader.num_examples} images")
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=tcfg.lr,
                                         momentum=tcfg.momentum, nesterov=tcfg.momentum > 0,
                                         weight_decay=tcfg.weight_decay)
        self.lr_schedule = build_lr_schedule(self.optimizer, tcfg, len(self.train_loader))
        self.attack = training_attack(self.net, tcfg, self.generator)
        val = self.data.val
        limit = cfg.threat_model.max_examples
        n_val = val.x.shape[0] if limit is None else min(limit, val.x.shape[0])
        self.val_x = val.x[:n_val].to(self.device).float().div_(255)
        self.val_y = val.y[:n_val].to(self.device)
        self.epoch = 0
        self.wall_time_s = 0.0
        self.train_time_s = 0.0
        self.best: dict[str, Any] = {}  # metrics of the best-validation-robust epoch
        self.best_state: dict[str, Tensor] | None = None
        self.on_batch: Callable[[], None] | None = None  # e.g. a progress bar's update
        self._partial: _EpochPart | None = None  # the epoch under way, between sub-epoch rungs

    # ----------------------------------------------------------------- training
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self.train_loader:
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

    def train_epoch(self) -> dict[str, float]:
        """One epoch of (adversarial) training, or the rest of one that `train_until` began."""
        return self.train_until(1.0)

    def train_until(self, fraction: float) -> dict[str, float]:
        """Train the current epoch up to `fraction` of its batches (a sub-epoch rung).

        The statistics cover the epoch so far. Host syncs only when it returns. The epoch
        counter moves on when the last batch is done; state is only saved between epochs.
        """
        tcfg = self.cfg.training
        part = self._partial or _EpochPart(iter(self._batches()), self.device)
        self._partial = part
        target = min(len(self.train_loader), max(part.batches, math.ceil(
            fraction * len(self.train_loader) - 1e-9)))
        self.model.train()
        start = time.perf_counter()
        while part.batches < target:
            x, y = next(part.batches_left)
            loss, logits = self._step(x, y)
            part.loss_sum += loss * y.shape[0]
            part.correct += (logits.argmax(1) == y).sum()
            part.seen += y.shape[0]
            part.batches += 1
            if self.on_batch is not None:
                self.on_batch()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        part.elapsed += time.perf_counter() - start
        if part.batches >= len(self.train_loader):
            self._partial = None
        seen = max(part.seen, 1)
        mean_loss = (part.loss_sum / seen).item()
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(
                f"training loss became {mean_loss} in epoch {self.epoch + 1} "
                f"({wrn_name(self.cfg.model.depth, self.cfg.model.width)}, method "
                f"{tcfg.method}, eps {formats.eps_label(tcfg.eps)}, lr {tcfg.lr:g}); lower the "
                f"learning rate or the epsilon"
            )
        return {
            M.TRAIN_LOSS: mean_loss,
            M.TRAIN_ACC: part.correct.item() / seen,
            M.EPOCH_TIME_S: part.elapsed,
            M.TRAIN_IMAGES_PER_S: part.seen / max(part.elapsed, 1e-9),
            M.LR: self.optimizer.param_groups[0]["lr"],
        }

    def _step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """One optimiser step on a batch (attacked first); returns the loss and the logits."""
        tcfg = self.cfg.training
        with self._autocast():
            x_in = x if self.attack is None else self.attack.perturb(x, y)
            if tcfg.method == "fgsm-mix" and self.attack is not None:
                clean_logits, logits = self.net(torch.cat([x, x_in])).chunk(2)
                loss = tcfg.mix_weight * F.cross_entropy(
                    clean_logits, y, label_smoothing=tcfg.label_smoothing
                ) + (1 - tcfg.mix_weight) * F.cross_entropy(
                    logits, y, label_smoothing=tcfg.label_smoothing
                )
            else:
                logits = self.net(x_in)
                loss = F.cross_entropy(logits, y, label_smoothing=tcfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.lr_schedule.step()
        return loss.detach(), logits

    @property
    def progress(self) -> float:
        """Epochs trained so far, with the trained part of the current epoch."""
        if self._partial is None:
            return float(self.epoch)
        return self.epoch + self._partial.batches / len(self.train_loader)

    # --------------------------------------------------------------- evaluation
    def evaluate(self) -> dict[str, float]:
        """Clean and PGD robust accuracy on the validation split at every eval epsilon.

        In float32 even on GPU (and without TF32: `attacks.exact_float32`): bf16 input
        gradients would weaken the attack, and the reported numbers must not depend on the
        training precision. PGD keeps each example's first adversarial iterate.
        """
        tm = self.cfg.threat_model
        start = time.perf_counter()
        clean = (predict(self.net, self.val_x, tm.batch_size) == self.val_y).float().mean()
        row: dict[str, float] = {M.VAL_CLEAN_ACC: clean.item(),
                                 M.VAL_EXAMPLES: int(self.val_y.shape[0])}
        generator = self._evaluation_generator()
        for eps in tm.epsilons:
            attack = _pgd_class(tm.norm)(self.net, eps, steps=tm.steps,
                                        restarts=tm.restarts, generator=generator)
            ok = robust_correct(self.net, attack, self.val_x, self.val_y, tm.batch_size)
            row[M.robust_acc_key(eps)] = ok.float().mean().item()
        row[M.VAL_ROBUST_ACC] = row[M.robust_acc_key(tm.epsilons[0])]
        row[M.EVAL_TIME_S] = time.perf_counter() - start
        return row

    def _evaluation_generator(self) -> torch.Generator:
        """Random starts of the validation attack, seeded by the progress: an evaluation never
        draws from the training generator, so evaluating at sub-epoch rungs (or not) leaves
        the training run itself unchanged."""
        seed = self.cfg.training.seed * 1_000_003 + round(self.progress * 1_000)
        return torch.Generator(device=self.device).manual_seed(seed)

    # -------------------------------------------------------------------- epoch
    def run_epoch(self) -> dict[str, Any]:
        """Train and evaluate one epoch; track the best-validation-robust weights."""
        return self.run_until(self.epoch + 1)

    def run_until(self, epochs: float) -> dict[str, Any]:
        """Train up to `epochs` (a fraction of the current epoch, or its end) and evaluate.

        Sub-epoch points are where early stopping judges an expensive trial before it has
        spent a whole epoch; the row's EPOCHS_DONE is then fractional. The best weights are
        tracked over every evaluation.
        """
        if not self.epoch < epochs <= self.epoch + 1:
            raise ValueError(f"epochs must lie in ({self.epoch}, {self.epoch + 1}], but got {epochs}")
        start = time.perf_counter()
        row = self.train_until(epochs - self.epoch)
        self.train_time_s += time.perf_counter() - start
        if self._partial is None:
            self.epoch += 1
        row.update(self.evaluate())
        done: float = self.epoch if self._partial is None else self.progress
        if not self.best or row[M.VAL_ROBUST_ACC] > self.best[M.VAL_ROBUST_ACC]:
            self.best = {k: v for k, v in row.items() if k.startswith("val_")}
            self.best[M.BEST_EPOCH] = done
            self.best_state = {k: v.detach().to("cpu", copy=True)
                               for k, v in self.model.state_dict().items()}
        self.wall_time_s += time.perf_counter() - start
        return {**self.static_facts(), **row, **self.best_summary(),
                M.EPOCHS_DONE: done, M.WALL_TIME_S: self.wall_time_s,
                M.TRAIN_TIME_S: self.train_time_s}

    def static_facts(self) -> dict[str, Any]:
        """What never changes during the run: identity and hyperparameters of the trial."""
        cfg = self.cfg
        return {
            M.WRN: wrn_name(cfg.model.depth, cfg.model.width),
            M.PARAMS: self.params,
            **hyperparameters(cfg),
            M.SPLIT: "validation",
        }

    def best_summary(self) -> dict[str, Any]:
        out = {
            M.BEST_VAL_ROBUST_ACC: self.best[M.VAL_ROBUST_ACC],
            M.BEST_VAL_CLEAN_ACC: self.best[M.VAL_CLEAN_ACC],
            M.BEST_EPOCH: self.best[M.BEST_EPOCH],
        }
        for eps in self.cfg.threat_model.epsilons:
            out[M.best_robust_acc_key(eps)] = self.best[M.robust_acc_key(eps)]
        return out

    @property
    def done(self) -> bool:
        return self.epoch >= self.cfg.training.epochs

    # -------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this exact run (weights_only-loadable).

        Only between epochs: a half-trained epoch's batch order is not part of the state.
        """
        if self._partial is not None:
            raise RuntimeError("a Trainer's state is saved between epochs, not mid-epoch")
        state: dict[str, Any] = {
            "config": self.cfg.to_dict(),
            "epoch": self.epoch,
            "wall_time_s": self.wall_time_s,
            "train_time_s": self.train_time_s,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": self.lr_schedule.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "best": dict(self.best),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["config"] != self.cfg.to_dict():
            log.warning("resuming from a checkpoint written with a different configuration")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.epoch = int(state["epoch"])
        self.wall_time_s = float(state["wall_time_s"])
        # states saved before training time was kept count all of the wall time as training
        self.train_time_s = float(state.get("train_time_s", self.wall_time_s))
        self.best = dict(state["best"])
