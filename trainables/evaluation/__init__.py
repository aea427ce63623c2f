"""Strong evaluation of one model on held-out images: attack suite, per-example minimum, checks.

PGD-k on a validation split is a good search signal and a weak final claim: published PGD
figures often drop several points under AutoAttack, and a model with masked gradients can
look robust to every gradient attack while being broken. This module attacks a model with
a suite of attacks and runs the automated sanity checks of Carlini et al. 2019 ("On
Evaluating Adversarial Robustness"), returning plain results; `search.final_evaluation` loads the
checkpoints and the test split, and stores what comes back.

- Attacks (the model in eval mode, parameters frozen, inputs in [0, 1]): FGSM (one step;
  the single-step baseline of the checks), the search's own PGD-k (the like-for-like
  figure on this split), a strong PGD (many steps, restarts), and AutoAttack (APGD-CE,
  APGD-T, FAB-T, Square: the official code of Croce & Hein 2020 from the `pyautoattack`
  package, with the settings of its "standard" version; see `autoattack_components`).
- Robust accuracy is the per-example minimum over every attack run at that epsilon: an
  example counts as robust only if it is clean-correct, no attack found an adversarial
  input for it, and a re-check of its worst-case input agrees (a disagreement, from a
  non-deterministic model or numerics, never counts in the model's favour).
- Only clean-correct examples are attacked; every adversarial input is re-checked to lie
  in the eps-ball and in [0, 1] before it counts. PGD keeps each example's first
  adversarial iterate (`attacks.PGD(freeze_fooled=True)`), and everything runs in exact
  float32 (`attacks.exact_float32`: no TF32).
- Every check ends "passed", "failed" or "not run" (a check that could not run, e.g. the
  Square check without AutoAttack, is never counted as passed); the verdict names the
  checks it rests on (`checks_summary`).
"""


from trainables.evaluation.attacking import (
    accuracy_curve,
    estimate_text,
    evaluate_model,
    fraction,
    zero_gradient_fraction,
)
from trainables.evaluation.autoattack import (
    autoattack_components,
    autoattack_description,
    autoattack_version,
    check_autoattack_version,
)
from trainables.evaluation.checks import noise, sanity_checks
from trainables.evaluation.records import (
    FAILED,
    INCOMPLETE,
    NOT_RUN,
    PASSED,
    AttackOutcome,
    Check,
    EpsResult,
    ModelEvaluation,
    check_status,
    checks_summary,
    checks_verdict,
)
from trainables.evaluation.suite import (
    ATTACKS,
    AUTOATTACK_COMPONENTS,
    AUTOATTACK_TESTED,
    L2_CURVE_FACTORS,
    LINF_CURVE,
    SuiteConfig,
    check_attacks,
    fingerprint,
)
from trainables.evaluation.transfer import destruction_rates, transfer_matrix

__all__ = [
    "ATTACKS", "AUTOATTACK_COMPONENTS", "AUTOATTACK_TESTED", "FAILED", "INCOMPLETE",
    "L2_CURVE_FACTORS", "LINF_CURVE", "NOT_RUN", "PASSED", "AttackOutcome", "Check",
    "EpsResult", "ModelEvaluation", "SuiteConfig", "accuracy_curve", "autoattack_components",
    "autoattack_description", "autoattack_version", "check_attacks", "check_autoattack_version",
    "check_status", "checks_summary", "checks_verdict", "destruction_rates", "estimate_text",
    "evaluate_model", "fingerprint", "fraction", "noise", "sanity_checks", "transfer_matrix",
    "zero_gradient_fraction",
]
