"""The demo's train stages run two at a time, each in a spawned process: which stages form a batch, and a failed
training stops the demo with its own error and records nothing for it (the quick demo, in test_demo.py, checks
that the trainings overlapped)."""

from __future__ import annotations

import pytest

from ml4ge.demo.concurrent_stages import concurrency, run_concurrently, training_batch
from ml4ge.demo.context import DemoRun
from ml4ge.demo.pipeline import ordered_stages, run_named_stage
from ml4ge.demo.presets import PRESETS


@pytest.mark.parametrize("study", ["default", "ml4h", "brain_age"])
def test_a_batch_is_the_models_train_stages_in_a_row(study):
    stages = ordered_stages(study)
    names = [name for name, _ in stages]
    first = next(index for index, (_, stage) in enumerate(stages) if stage.kind == "train")
    batch = [name for name, _ in training_batch(stages, first)]
    assert batch and all(name.startswith("train_") for name in batch)
    after = names[first + len(batch)]
    assert not after.startswith("train_") or stages[first + len(batch)][1].model is None
    assert training_batch(stages, 0) == [] and training_batch(stages, names.index("tensorize")) == []


def test_concurrency_is_two_at_most_and_one_for_one_stage():
    assert concurrency(1) == 1 and concurrency(0) == 0
    assert concurrency(4) == min(2, __import__("os").cpu_count())


def test_a_failed_training_stops_the_demo_with_its_own_error(tmp_path):
    run = DemoRun(tmp_path / "demo", PRESETS.get("quick"), seed=1, num_workers=0)
    run.folder.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="tensors"):
        run_concurrently(run, ["train_ae_t1", "train_ae_t2"], run_named_stage)
    assert not (run.folder / "stages").exists()
    assert "[train_ae_t1]" in (run.folder / "log.txt").read_text()
