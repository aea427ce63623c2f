"""Published robust accuracies on CIFAR-10 at L-inf 8/255: anchors for a found front.

A front found by a search is only meaningful next to what is known. These points are
drawn on the front figure, kept apart from the run's own figures (which come from a
validation split and the search's PGD-k), each labelled with its evaluation:

- AutoAttack, full test set. RobustBench's model zoo (Croce et al. 2021,
  https://robustbench.github.io): clean and AutoAttack accuracy on all 10,000 CIFAR-10
  test images, copied from `model_info/cifar10/Linf/<name>.json` of
  github.com/RobustBench/robustbench at commit 78fcc9e (2025-03-31). Chosen: every entry
  whose architecture is a WideResNet-d-k, with no additional data, no synthetic
  (generated) training images, eps exactly 8/255 and not flagged unreliable; of those,
  the non-dominated ones in (parameters, AutoAttack accuracy), which is the published
  front, plus the two PGD adversarial-training baselines this project's trainer follows
  (Madry et al. 2018; Rice et al. 2020, PGD training with the best checkpoint kept).
- PGD-10, full test set. Rice et al. 2020's WRN-34-k width sweep ("Overfitting in
  adversarially robust deep learning", ICML 2020): test robust accuracy under PGD-10
  (step 2/255, one random start, the LAST iterate, which flatters a little; see
  `trainables.attacks.PGD`), at the best epoch of 200, picked on the test set itself (as
  the paper's width figure does). Read from their training logs,
  `experiments/cifar10_wide/wideresnet_<k>/output.log` of
  github.com/locuslab/robust_overfitting at commit c47a25c (the last "Test Robust Acc"
  and "Test Acc" columns of the best epoch). Their WRN-34-20 reads 58.2% there and 53.4%
  under AutoAttack (RobustBench): the gap between the two evaluations, on one model.

Parameter counts are not in the sources: they are `models.count_parameters` of the
standard WRN-d-k for ten classes, the same family as this project's models (the
published implementations differ in small details such as the activation function).
"""

from __future__ import annotations

from dataclasses import dataclass

from models import count_parameters, wrn_name

AUTOATTACK = "AutoAttack"
PGD10 = "PGD-10"
EVALUATIONS = {
    AUTOATTACK: "AutoAttack (standard), full CIFAR-10 test set, RobustBench",
    PGD10: "PGD-10 (last iterate, step 2/255), full CIFAR-10 test set, best epoch picked on test",
}
DATASETS = ("cifar10", "cifar10-sample")  # runs whose test images are CIFAR-10's
NORM, EPS = "linf", 8 / 255

_ROBUSTBENCH = "RobustBench model_info/cifar10/Linf/{}.json (github.com/RobustBench/robustbench@78fcc9e)"
_RICE_LOG = ("Rice et al. 2020 training log experiments/cifar10_wide/wideresnet_{}/output.log "
             "(github.com/locuslab/robust_overfitting@c47a25c), epoch {}")


@dataclass(frozen=True)
class PublishedPoint:
    """One published model: where it sits and how its robust accuracy was measured."""

    name: str  # short label for the plot
    depth: int
    width: int
    clean_acc: float  # fraction in [0, 1]
    robust_acc: float  # fraction in [0, 1], under `evaluation`
    evaluation: str  # AUTOATTACK or PGD10 (see EVALUATIONS)
    paper: str  # authors, venue
    source: str  # the file the numbers were copied from

    @property
    def params(self) -> int:
        return count_parameters(self.depth, self.width, 10)

    @property
    def wrn(self) -> str:
        return wrn_name(self.depth, self.width)

    def tooltip(self) -> str:
        return "\n".join([
            f"{self.name}: {self.wrn}, {self.params:,} parameters",
            f"{self.paper}",
            f"robust {100 * self.robust_acc:.2f}% at 8/255, clean {100 * self.clean_acc:.2f}%",
            f"evaluation: {EVALUATIONS[self.evaluation]}",
            f"source: {self.source}",
        ])


def _robustbench(key: str, name: str, depth: int, width: int, clean: float, aa: float,
                 paper: str) -> PublishedPoint:
    return PublishedPoint(name, depth, width, clean / 100, aa / 100, AUTOATTACK, paper,
                          _ROBUSTBENCH.format(key))


def _rice(width: int, epoch: int, clean: float, robust: float) -> PublishedPoint:
    return PublishedPoint(f"Rice k={width}", 34, width, clean, robust, PGD10,
                          "Rice, Wong, Kolter, ICML 2020 (width sweep)", _RICE_LOG.format(width, epoch))


ROBUSTBENCH: tuple[PublishedPoint, ...] = (
    _robustbench("Ding2020MMA", "Ding 2020", 28, 4, 84.36, 41.44, "Ding et al., ICLR 2020 (MMA)"),
    _robustbench("Qin2019Adversarial", "Qin 2019", 40, 8, 86.28, 52.84,
                 "Qin et al., NeurIPS 2019 (local linearization)"),
    _robustbench("Madry2018Towards", "Madry 2018", 34, 10, 87.14, 44.04,
                 "Madry et al., ICLR 2018 (PGD adversarial training)"),
    _robustbench("Addepalli2021Towards_WRN34", "Addepalli 2022", 34, 10, 85.32, 58.04,
                 "Addepalli et al., ECCV 2022"),
    _robustbench("Rice2020Overfitting", "Rice 2020", 34, 20, 85.34, 53.42,
                 "Rice et al., ICML 2020 (PGD training, best checkpoint)"),
    _robustbench("Chen2024Data_WRN_34_20", "Chen 2024", 34, 20, 86.10, 58.09,
                 "Chen & Lee, Pattern Recognition 2024"),
)

# (width, best epoch, test clean, test PGD-10 robust) from each log's best epoch.
RICE_WIDTH_SWEEP: tuple[PublishedPoint, ...] = tuple(_rice(*row) for row in (
    (1, 165, 0.7755, 0.4989), (2, 116, 0.8044, 0.5220), (3, 101, 0.8076, 0.5396),
    (4, 101, 0.8362, 0.5469), (5, 105, 0.8465, 0.5500), (6, 104, 0.8395, 0.5528),
    (7, 102, 0.8577, 0.5578), (8, 103, 0.8549, 0.5600), (9, 100, 0.8595, 0.5621),
    (10, 101, 0.8607, 0.5680), (15, 101, 0.8727, 0.5690), (20, 101, 0.8534, 0.5816),
))

PUBLISHED_REFERENCE: tuple[PublishedPoint, ...] = ROBUSTBENCH + RICE_WIDTH_SWEEP


def published_for(dataset: str | None, norm: str | None, eps: float | None) -> tuple[PublishedPoint, ...]:
    """The points comparable with one front: CIFAR-10 test images, L-inf, eps 8/255.

    Other threat models get none: a number at another epsilon or dataset would mislead.
    """
    if dataset in DATASETS and norm == NORM and eps is not None and abs(eps - EPS) < 1e-9:
        return PUBLISHED_REFERENCE
    return ()


__all__ = ["AUTOATTACK", "EVALUATIONS", "PGD10", "PUBLISHED_REFERENCE", "PublishedPoint",
           "published_for"]
