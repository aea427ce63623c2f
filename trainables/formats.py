"""How numbers read for humans: one formatter per kind of number, used by every printer.

The CLI, the status line, `wrn-search status` and the report all show the same epsilons,
accuracies, sizes and durations; defining each form once keeps them from drifting apart.
Missing values (None, NaN) read as an em dash everywhere. Database URLs and storage URIs are
shown (and stored) with their password or secret key masked (`mask_url`, `mask_secrets`).
"""

from __future__ import annotations

import math
import re
from typing import Any

MISSING = "—"
MASK = "***"
# scheme://user:password@ in free text: the password runs up to the last '@' of the word
_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s/:@'\"]*:)[^\s'\"]+@")
# a key given as a URI query parameter (?secret_key=..., &session_token=...)
_QUERY_SECRET = re.compile(r"([?&](?:secret_key|session_token|token|password)=)[^&\s'\"#]+",
                           re.IGNORECASE)


def mask_url(url: str) -> str:
    """A database URL as it may be shown or stored: its password replaced by ***.

    SQLAlchemy parses it when it can (as Optuna will); anything else is masked as text.
    """
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy knows (or no SQLAlchemy): mask it as text
        return mask_secrets(url)


def mask_secrets(text: str) -> str:
    """Free text (a spec file, an error line, a report) with every URL password masked:
    a database URL's, an object-store URI's secret key (s3://KEY_ID:SECRET@bucket/...) and
    a secret given as a query parameter."""
    return _QUERY_SECRET.sub(rf"\1{MASK}", _CREDENTIALS.sub(rf"\1{MASK}@", text))


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def eps_label(eps: float) -> str:
    """An epsilon's exact form: '8/255' when it is a whole number of 1/255 steps, else the number."""
    steps = eps * 255
    if abs(steps - round(steps)) < 1e-6:
        return f"{round(steps)}/255"
    return f"{eps:g}"


def eps_text(eps: Any, norm: str = "linf") -> str:
    """An epsilon for tables: L-inf always in 1/255 units ('8/255', '7.2/255'), L2 the number."""
    value = _finite(eps)
    if value is None:
        return MISSING
    if norm != "linf":
        return f"{value:g}"
    label = eps_label(value)
    return label if "/" in label else f"{value * 255:.1f}/255"


def duration(seconds: Any) -> str:
    """A wall-clock span: '0m07s', '4m07s', '2h05m00s' (negative spans read as 0)."""
    value = _finite(seconds)
    if value is None:
        return MISSING
    whole = max(0, int(value))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def percent(fraction: Any) -> str:
    """An accuracy (a fraction in [0, 1]) as a percentage with one decimal: '12.3%'."""
    value = _finite(fraction)
    return MISSING if value is None else f"{100 * value:.1f}%"


def params(n: Any) -> str:
    """A parameter count: 1234567 -> '1.23M', 78000 -> '78k'."""
    value = _finite(n)
    if value is None:
        return MISSING
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.0f}"


def number(value: Any) -> str:
    """A plain number in its shortest form ('3', '0.25', '1.5e-05')."""
    v = _finite(value)
    return MISSING if v is None else f"{v:g}"


def whole(value: Any) -> str:
    """A count or an epoch number, truncated to an integer."""
    v = _finite(value)
    return MISSING if v is None else f"{int(v)}"
