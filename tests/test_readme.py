"""The README's Python API example, run verbatim (a real 2-minute search: slow)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import ray
from conftest import ROOT


def _python_block(after: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(after):]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


@pytest.mark.slow
def test_the_python_api_example_runs_as_written(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "quickstart.toml").write_text(
        (ROOT / "configs" / "quickstart.toml").read_text())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    try:
        exec(compile(_python_block("## Python API"), "README.md", "exec"), namespace)  # noqa: S102
    finally:
        ray.shutdown()
    assert namespace["outcome"].state in ("finished", "budget_exhausted")
    assert len(namespace["trials"]) >= 1
    assert os.path.getsize(tmp_path / "runs" / "api" / "front.png") > 1000
    assert not namespace["robust"].members.empty
