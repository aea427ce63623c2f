"""Pieces the benchmark scripts share (imported as a sibling: `python benchmarks/x.py`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# "process-per-trial": Ray's own default, one new worker process per trial (what the project
# did before the overhead benchmark); "reuse-actors": one process per slot, the project's.
VARIANTS = {"process-per-trial": False, "reuse-actors": True}


@contextlib.contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)



def machine_facts(**extra: Any) -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "load_average_start": list(os.getloadavg()),
            "python": platform.python_version(),
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]), **extra}


def write_results(path: str | None, facts: dict[str, Any], args: Any, summary: Any,
                  runs: Any) -> None:
    """The benchmark's JSON record (`--json`): machine facts, settings, summary and every run,
    in the shape `--render` reads back."""
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"facts": facts, "settings": {
        k: str(v) for k, v in vars(args).items()}, "summary": summary, "runs": runs},
        indent=1, default=float))
    print(f"wrote {path}")
