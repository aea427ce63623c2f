"""Untested Ray and Optuna releases are refused in one line before Ray starts (search/versions.py)."""

from __future__ import annotations

import logging

import pytest

from search import versions
from trainables.config import ConfigError


def test_the_installed_releases_are_the_tested_ones() -> None:
    versions.check_tested_versions()  # CI installs from constraints.txt


@pytest.mark.parametrize(("package", "installed", "expected"), [
    ("ray", "2.60.0", False), ("ray", "2.60.3", False), ("ray", "2.61.0", True),
    ("ray", "2.59.9", True), ("optuna", "5.0.1", False), ("optuna", "4.6.0", True),
    ("optuna", "not installed", True),
])
def test_untested_is_outside_the_declared_range(package: str, installed: str, expected: bool) -> None:
    assert versions.untested(package, installed) is expected


def test_an_untested_release_is_one_line_unless_allowed(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(versions, "version", lambda package: "2.70.0" if package == "ray" else "5.0.0")
    with pytest.raises(ConfigError, match=r"^ray: '2.70.0' is not allowed; wrn-search is tested "
                                          r"with ray>=2.60,<2.61 .*WRN_SEARCH_ALLOW_UNTESTED=1") as err:
        versions.check_tested_versions()
    assert "\n" not in str(err.value)
    monkeypatch.setenv(versions.ALLOW_UNTESTED, "1")
    with caplog.at_level(logging.WARNING):
        versions.check_tested_versions()
    assert "ray: '2.70.0' is not allowed" in caplog.text
