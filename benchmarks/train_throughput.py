"""Training throughput of the project's engine against a naive baseline, side by side.

Every figure this script prints is meant to be read as a ratio: the engine
(`trainables.trainer.Trainer.train_epoch`) and a naive baseline train the same WRN on
the same images in the same process, interleaved (for each repetition and each method,
one engine run and one baseline run, the order alternating between repetitions), so a
machine that is busy with other work slows both sides alike. Absolute images/s only
mean something on an otherwise idle GPU.

The naive baseline is the way a typical research script trains (Madry et al.; Rice et
al.'s robust-overfitting code; torchvision's CIFAR-10 dataset):

- a `Dataset` that holds the images as HWC uint8 arrays and builds a PIL image in every
  `__getitem__` (as `torchvision.datasets.CIFAR10` does), with
  `Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor()])`, batched by
  a shuffling `DataLoader` (`--workers`, 0 by default; pinned memory on CUDA);
- fp32 (PyTorch's defaults, so convolutions may use TF32 on Ampere and later), no
  channels_last, no autocast, `cudnn.benchmark` off;
- the attack made with the model in train mode and parameter gradients on
  (`delta.requires_grad_(); loss.backward(); delta.grad.sign()`, grads zeroed before the
  weight update), so every attack step also computes weight gradients and updates the
  BatchNorm statistics;
- `.item()` on the loss and the accuracy after every optimiser step (a host sync each step);
- the same `models.WideResNet`, SGD settings and LR schedule as the engine.

The engine side is a `Trainer` built on a training split of exactly `--batches` batches,
so one `train_epoch()` call is one timed repetition; both sides process
`batches * batch_size` images per repetition. Before timing, each side runs
`--warmup` batches that are discarded (cuDNN autotuning, allocator growth,
`torch.compile`).

FLOP accounting (for model FLOP utilisation, printed on CUDA). F is the forward FLOPs
of the WRN per image, counted with `torch.utils.flop_counter.FlopCounterMode` on one
batch (it counts a multiply-add as 2 FLOPs). The useful work per training image is

    3F                  the weight update: forward, backward to activations and to weights
  + k * 2F              k attack steps (clean: k = 0, fgsm-rs: k = 1, pgd-k: k), each a
                        forward and a backward to the input only

MFU = (useful FLOPs per image) * (images/s) / peak. The same useful-work count is used
for both sides (the baseline's extra weight gradients during the attack are waste, not
work), against the GPU's dense bf16 peak (`--peak-tflops`, 989 for an H100 SXM).

Usage (CPU, small; docs/benchmarks.md has the GPU commands):

    python benchmarks/train_throughput.py --depth 16 --width 2 --batch-size 64 \
        --batches 3 --reps 5 --threads 1 --device cpu
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

from models import WideResNet, wrn_name
from trainables.config import (
    DATASETS,
    ConfigError,
    DataConfig,
    ModelConfig,
    ThreatModel,
    TrainingConfig,
    TrialConfig,
)
from trainables.data import DatasetSplits, Split, load_dataset  # noqa: E402
from trainables.loader import BatchLoader
from trainables.trainer import Trainer, build_lr_schedule, resolve_device

H100_SXM_BF16_DENSE_TFLOPS = 989.0
VAL_IMAGES = 10  # the smallest validation split the config allows; never evaluated here
EPS = 8 / 255


# --------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    """One training method as the command line names it ('clean', 'fgsm-rs', 'pgd-10')."""

    label: str
    kind: str  # TrainingConfig.method: clean, fgsm-rs or pgd
    steps: int  # attack steps per training batch (0 for clean)

    def training_config(self, batch_size: int, seed: int) -> TrainingConfig:
        return TrainingConfig(method=self.kind, eps=EPS, steps=max(1, self.steps),
                              batch_size=batch_size, epochs=1000, seed=seed)


def parse_method(text: str) -> Method:
    """'clean', 'fgsm-rs' or 'pgd-K' (K >= 1 steps); anything else is a one-line error."""
    text = text.strip().lower()
    if text == "clean":
        return Method(text, "clean", 0)
    if text == "fgsm-rs":
        return Method(text, "fgsm-rs", 1)
    match = re.fullmatch(r"pgd-(\d+)", text)
    if match and int(match.group(1)) >= 1:
        return Method(text, "pgd", int(match.group(1)))
    raise ConfigError(f"--methods: {text!r} is not allowed; use clean, fgsm-rs or pgd-K (K >= 1)")


# --------------------------------------------------------------------------- baseline


class _PILDataset(Dataset[tuple[Tensor, int]]):
    """The images as HWC uint8 arrays, turned into PIL and transformed one at a time."""

    def __init__(self, split: Split, transform: Callable[[Image.Image], Tensor]) -> None:
        self.images = split.x.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = split.y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


class NaiveBaseline:
    """A typical research script's adversarial training loop (see the module docstring)."""

    def __init__(self, split: Split, method: Method, *, depth: int, width: int,
                 num_classes: int, batch_size: int, device: torch.device, workers: int,
                 seed: int) -> None:
        self.method = method
        self.device = device
        self.tcfg = method.training_config(batch_size, seed)
        torch.manual_seed(seed)
        self.model = WideResNet(depth, width, num_classes).to(device)
        transform = transforms.Compose([
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
        ])
        self.loader = DataLoader(
            _PILDataset(split, transform), batch_size=batch_size, shuffle=True, drop_last=True,
            num_workers=workers, pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(seed),
        )
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.tcfg.lr,
                                         momentum=self.tcfg.momentum,
                                         nesterov=self.tcfg.momentum > 0,
                                         weight_decay=self.tcfg.weight_decay)
        self.lr_schedule = build_lr_schedule(self.optimizer, self.tcfg, len(self.loader))

    def _attack(self, x: Tensor, y: Tensor) -> Tensor:
        """PGD / FGSM-RS the usual way: train mode, weight grads computed and thrown away."""
        eps, alpha = self.tcfg.eps, self.tcfg.step_size
        delta = torch.zeros_like(x).uniform_(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
        delta.requires_grad_()
        for _ in range(self.method.steps):
            loss = F.cross_entropy(self.model(x + delta), y)
            loss.backward()
            delta.data = (delta + alpha * delta.grad.sign()).clamp(-eps, eps)
            delta.data = (x + delta.data).clamp(0, 1) - x
            delta.grad.zero_()
        return (x + delta.detach()).clamp(0, 1)

    def train(self, max_batches: int) -> int:
        """Train on up to `max_batches` batches; returns the number of images seen."""
        self.model.train()
        seen, loss_sum, correct = 0, 0.0, 0
        for i, (x, y) in enumerate(self.loader):
            if i == max_batches:
                break
            x, y = x.to(self.device), y.to(self.device)
            x_in = x if self.method.steps == 0 else self._attack(x, y)
            logits = self.model(x_in)
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.lr_schedule.step()
            loss_sum += loss.item() * y.shape[0]  # the per-step logging sync
            correct += (logits.argmax(1) == y).sum().item()
            seen += y.shape[0]
        return seen


# --------------------------------------------------------------------------- engine


def build_trainer(data: DatasetSplits, method: Method, args: argparse.Namespace,
                  device: torch.device) -> Trainer:
    cfg = TrialConfig(
        data=DataConfig(dataset=args.data, data_dir=args.data_dir, val_size=VAL_IMAGES),
        model=ModelConfig(depth=args.depth, width=args.width),
        training=method.training_config(args.batch_size, args.seed),
        threat_model=ThreatModel(max_examples=VAL_IMAGES),
        device=device.type,
        compile=args.compile,
        threads=args.threads,
    )
    return Trainer(cfg, data=data)


def warm_up_engine(trainer: Trainer, batches: int) -> None:
    """One `train_epoch()` over a short loader of the first `batches` batches, discarded.

    The real loader goes back afterwards, so the timed epochs stay exactly `--batches` long.
    """
    real = trainer.train_loader
    n = batches * real.batch_size
    trainer.train_loader = BatchLoader(Split(x=real.x[:n], y=real.y[:n]), real.batch_size,
                                       device=trainer.device, shuffle=True, augment=True,
                                       drop_last=True, generator=trainer.generator)
    try:
        trainer.train_epoch()
    finally:
        trainer.train_loader = real


# --------------------------------------------------------------------------- timing


@contextlib.contextmanager
def _cudnn_benchmark(on: bool) -> Iterator[None]:
    """The engine turns cudnn.benchmark on globally; the baseline runs with it off."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], int], device: torch.device, *, cudnn_benchmark: bool) -> float:
    """Images/s of one repetition, with the device idle at both ends."""
    with _cudnn_benchmark(cudnn_benchmark):
        _sync(device)
        start = time.perf_counter()
        images = run()
        _sync(device)
        return images / (time.perf_counter() - start)


@dataclass
class MethodResult:
    method: str
    attack_steps: int
    engine_images_per_s: list[float] = field(default_factory=list)
    baseline_images_per_s: list[float] = field(default_factory=list)

    @property
    def engine_median(self) -> float:
        return statistics.median(self.engine_images_per_s)

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline_images_per_s)

    @property
    def ratio(self) -> float:
        return self.engine_median / self.baseline_median

    @property
    def paired_ratios(self) -> list[float]:
        """Engine/baseline within each repetition: the two ran back to back, so load
        that drifts between repetitions cancels; their spread shows how noisy the run was."""
        return [e / b for e, b in zip(self.engine_images_per_s, self.baseline_images_per_s,
                                      strict=True)]

    def summary(self, forward_flops: float, peak_tflops: float | None) -> dict[str, Any]:
        """Medians, ratios and achieved TFLOP/s; MFU only against a GPU peak (None on CPU)."""
        per_image = training_flops_per_image(forward_flops, self.attack_steps)
        out = asdict(self)
        out.update(engine_median=self.engine_median, baseline_median=self.baseline_median,
                   ratio=self.ratio, paired_ratios=self.paired_ratios,
                   train_flops_per_image=per_image)
        for side, value in (("engine", self.engine_median), ("baseline", self.baseline_median)):
            out[f"{side}_tflops"] = per_image * value / 1e12
            out[f"{side}_mfu"] = None if peak_tflops is None else out[f"{side}_tflops"] / peak_tflops
        return out


def training_flops_per_image(forward_flops: float, attack_steps: int) -> float:
    """3F for the weight update plus 2F per attack step (see the module docstring)."""
    return (3 + 2 * attack_steps) * forward_flops


def forward_flops_per_image(depth: int, width: int, num_classes: int, batch_size: int,
                            device: torch.device) -> float:
    model = WideResNet(depth, width, num_classes).to(device).eval()
    x = torch.rand(batch_size, 3, 32, 32, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / batch_size


def benchmark(data: DatasetSplits, methods: Sequence[Method], args: argparse.Namespace,
              device: torch.device) -> list[MethodResult]:
    """Interleaved engine/baseline repetitions for every method; warm-ups discarded."""
    setups = []
    for method in methods:
        trainer = build_trainer(data, method, args, device)
        baseline = NaiveBaseline(data.train, method, depth=args.depth, width=args.width,
                                 num_classes=DATASETS[args.data], batch_size=args.batch_size,
                                 device=device, workers=args.workers, seed=args.seed)
        warm_up_engine(trainer, args.warmup)
        with _cudnn_benchmark(False):
            baseline.train(args.warmup)
        setups.append((trainer, baseline, MethodResult(method.label, method.steps)))
    for rep in range(args.reps):
        for trainer, baseline, result in setups:
            sides = [("engine", trainer), ("baseline", baseline)]
            for name, side in sides if rep % 2 == 0 else sides[::-1]:
                if name == "engine":
                    rate = timed(lambda t=side: _engine_images(t), device, cudnn_benchmark=True)
                    result.engine_images_per_s.append(rate)
                else:
                    rate = timed(lambda b=side: b.train(args.batches), device,
                                 cudnn_benchmark=False)
                    result.baseline_images_per_s.append(rate)
            print(f"  rep {rep + 1}/{args.reps} {result.method:>8}: engine "
                  f"{result.engine_images_per_s[-1]:8.1f} img/s, baseline "
                  f"{result.baseline_images_per_s[-1]:8.1f} img/s", file=sys.stderr)
    return [result for _, _, result in setups]


def _engine_images(trainer: Trainer) -> int:
    trainer.train_epoch()
    return len(trainer.train_loader) * trainer.train_loader.batch_size


# --------------------------------------------------------------------------- reporting


def machine_facts(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device.type,
        "load_average_start": list(os.getloadavg()),
    }
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
        facts["peak_tflops"] = args.peak_tflops
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def format_table(rows: Sequence[dict[str, Any]], cuda: bool) -> str:
    header = (f"{'method':<10} {'engine img/s':>13} {'baseline img/s':>15} {'ratio':>7} "
              f"{'per-rep ratios':>15}")
    if cuda:
        header += f" {'engine MFU':>11} {'baseline MFU':>13}"
    lines = [header, "-" * len(header)]
    for r in rows:
        spread = f"{min(r['paired_ratios']):.2f}-{max(r['paired_ratios']):.2f}x"
        line = (f"{r['method']:<10} {r['engine_median']:>13.1f} {r['baseline_median']:>15.1f} "
                f"{r['ratio']:>6.2f}x {spread:>15}")
        if cuda:
            line += f" {100 * r['engine_mfu']:>10.1f}% {100 * r['baseline_mfu']:>12.1f}%"
        lines.append(line)
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, but got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, but got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--depth", type=int, default=16, help="WRN depth (6n+4)")
    p.add_argument("--width", type=int, default=2, help="WRN widening factor k")
    p.add_argument("--methods", default="clean,fgsm-rs,pgd-10",
                   help="comma-separated: clean, fgsm-rs, pgd-K")
    p.add_argument("--batch-size", type=_positive, default=64)
    p.add_argument("--batches", type=_positive, default=4, help="timed batches per repetition")
    p.add_argument("--reps", type=_positive, default=3, help="timed repetitions per side")
    p.add_argument("--warmup", type=_positive, default=2, help="discarded batches per side")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=_positive, default=None, help="torch intra-op threads")
    p.add_argument("--workers", type=_non_negative, default=0, help="baseline DataLoader workers")
    p.add_argument("--data", choices=tuple(DATASETS), default="cifar10-sample")
    p.add_argument("--data-dir", default=None,
                   help="dataset location, e.g. the shared cifar10-jpeg.tar.gz")
    p.add_argument("--compile", action="store_true", help="torch.compile the engine (CUDA)")
    p.add_argument("--peak-tflops", type=float, default=H100_SXM_BF16_DENSE_TFLOPS,
                   help="dense bf16 peak of the GPU, for MFU (989: H100 SXM)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    return p


def load_images(args: argparse.Namespace) -> DatasetSplits:
    """Exactly `batches * batch_size` training images (a stratified subset), 10 for validation."""
    needed = args.batches * args.batch_size
    cfg = DataConfig(dataset=args.data, data_dir=args.data_dir, val_size=VAL_IMAGES,
                     train_subset=needed + VAL_IMAGES, seed=args.seed)
    return load_dataset(cfg)


def run(args: argparse.Namespace) -> dict[str, Any]:
    methods = [parse_method(m) for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise ConfigError(f"--methods: {args.methods!r} is not allowed; name at least one method")
    ModelConfig(depth=args.depth, width=args.width)  # one-line error for a bad WRN
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_images(args)
    facts = machine_facts(device, args)
    name = wrn_name(args.depth, args.width)
    print(f"{name}, batch {args.batch_size}, {args.batches} batches x {args.reps} reps, "
          f"device {device.type}, {facts['torch_threads']} threads, data {args.data}",
          file=sys.stderr)
    results = benchmark(data, methods, args, device)
    forward = forward_flops_per_image(args.depth, args.width, DATASETS[args.data],
                                      args.batch_size, device)
    peak = args.peak_tflops if device.type == "cuda" else None
    rows = [r.summary(forward, peak) for r in results]
    facts["load_average_end"] = list(os.getloadavg())
    print(format_table(rows, device.type == "cuda"))
    print(f"forward GFLOPs/image {forward / 1e9:.3f}; load average "
          f"{facts['load_average_start'][0]:.2f} -> {facts['load_average_end'][0]:.2f}")
    if device.type == "cuda":
        print(f"MFU against a dense bf16 peak of {args.peak_tflops:g} TFLOP/s "
              f"({facts['gpu']}); useful FLOPs = (3 + 2k) x forward for k attack steps")
    return {"model": name, "args": {k: str(v) if isinstance(v, Path) else v
                                    for k, v in vars(args).items()},
            "machine": facts, "forward_flops_per_image": forward, "results": rows}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
