"""Checkpoint files: resuming continues the same run, the best file holds the best epoch, and a
write is never seen half done (trainables/checkpoint.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_trainer import _trainer

from trainables import metrics as M
from trainables.checkpoint import load_best_model, restore_checkpoint, save_atomic, save_checkpoint


def test_resume_from_a_checkpoint_continues_the_same_run(tmp_path) -> None:
    straight = _trainer()
    straight.run_epoch()
    final = straight.run_epoch()

    first = _trainer()
    first.run_epoch()
    save_checkpoint(first, tmp_path)
    resumed = _trainer()
    restore_checkpoint(resumed, tmp_path)
    assert resumed.epoch == 1
    again = resumed.run_epoch()

    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    for key in (M.TRAIN_LOSS, M.VAL_CLEAN_ACC, M.VAL_ROBUST_ACC, M.BEST_EPOCH, M.LR):
        assert again[key] == final[key], key


def test_best_checkpoint_holds_the_best_epoch_weights(tmp_path) -> None:
    trainer = _trainer()
    trainer.run_epoch()
    best_after_one = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.best[M.VAL_ROBUST_ACC] = 2.0  # no later epoch can beat this: epoch 1 stays best
    trainer.run_epoch()
    save_checkpoint(trainer, tmp_path)
    model, info = load_best_model(tmp_path)
    assert info["epoch"] == 1 and not model.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, best_after_one[name]), name


def test_an_interrupted_write_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    save_atomic({"epoch": 1}, path)

    class Unpicklable:
        def __reduce__(self) -> tuple:
            raise RuntimeError("interrupted mid-write")

    with pytest.raises(RuntimeError, match="interrupted mid-write"):
        save_atomic({"epoch": 2, "junk": Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]  # no temporary file left


@pytest.mark.parametrize("damage", ["truncated", "empty", "foreign", "not a checkpoint"])
def test_a_damaged_best_model_is_one_line_naming_the_file(tmp_path: Path, damage: str) -> None:
    from trainables.checkpoint import UnreadableCheckpoint, best_config

    trainer = _trainer()
    trainer.run_epoch()
    save_checkpoint(trainer, tmp_path)
    best = tmp_path / "best_model.pt"
    if damage == "truncated":
        best.write_bytes(best.read_bytes()[:1000])
    elif damage == "empty":
        best.write_bytes(b"")
    elif damage == "foreign":  # a pickle that runs code on load: refused, never run
        import pickle

        best.write_bytes(pickle.dumps(Path("/")))
    else:
        torch.save({"weights": torch.zeros(3)}, best)
    for load in (load_best_model, best_config):
        with pytest.raises(UnreadableCheckpoint) as err:
            load(tmp_path)
        message = str(err.value)
        assert message.startswith(f"checkpoint: {str(best)!r} cannot be read (")
        assert "\n" not in message


def test_a_torn_best_model_on_restore_drops_the_best_and_keeps_training(tmp_path: Path) -> None:
    """Found by the fault matrix: a best_model.pt torn by a kill while Ray copied it made
    every retry of the trial fail. The state is whole, so training continues; the best is
    chosen again from the epochs to come (no metrics without the weights behind them)."""
    first = _trainer()
    first.run_epoch()
    save_checkpoint(first, tmp_path)
    best = tmp_path / "best_model.pt"
    best.write_bytes(best.read_bytes()[:100])
    resumed = _trainer()
    restore_checkpoint(resumed, tmp_path)
    assert resumed.epoch == 1 and resumed.best == {} and resumed.best_state is None
    row = resumed.run_epoch()
    assert row[M.BEST_EPOCH] == 2 and resumed.best_state is not None
