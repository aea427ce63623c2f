"""The Ray trainable's own logic (the real trainable runs in tests/test_search.py)."""

from __future__ import annotations

from trainables.tune_trial import checkpoint_due, report_points


def test_report_points_are_every_epoch_and_the_sub_epoch_rungs() -> None:
    assert report_points(3) == [1.0, 2.0, 3.0]
    assert report_points(3, [0.125, 0.375, 1.125]) == [0.125, 0.375, 1.0, 1.125, 2.0, 3.0]
    assert report_points(2, [0.5, 2.0, 7.0, 0]) == [0.5, 1.0, 2.0]  # outside (0, epochs): ignored
    assert report_points(1, None) == [1.0]


def test_checkpoints_after_the_last_epoch_and_then_per_interval() -> None:
    assert checkpoint_due(True, 0.0, 60.0)
    assert not checkpoint_due(False, 10.0, 60.0)
    assert checkpoint_due(False, 60.0, 60.0)
    assert checkpoint_due(False, 0.0, 0.0)  # interval 0: every epoch
