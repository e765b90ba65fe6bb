"""The demo's estimate of its remaining time: the remaining stages' measured shares, scaled by this run's pace."""

from __future__ import annotations

import pytest

from ml4ge.demo.eta import REFERENCE_SECONDS, eta_line, remaining_seconds, stage_weight
from ml4ge.demo.pipeline import ordered_stages


def test_the_time_left_follows_this_runs_pace():
    # this run took twice the reference for generate and tensorize: the rest should take twice as long too
    done = {"generate": ("generate", 2 * REFERENCE_SECONDS["generate"]),
            "tensorize": ("tensorize", 2 * REFERENCE_SECONDS["tensorize"])}
    todo = [("train_ae_t1", "train"), ("compare", "compare")]
    expected = 2 * (REFERENCE_SECONDS["train_ae_t1"] + REFERENCE_SECONDS["compare"])
    assert remaining_seconds(done, todo) == pytest.approx(expected)
    assert remaining_seconds({}, todo) is None


def test_a_stage_of_another_study_weighs_as_its_kind():
    trains = [seconds for name, seconds in REFERENCE_SECONDS.items() if name.startswith("train_")]
    assert stage_weight("train_vit_t1", "train") == pytest.approx(sum(trains) / len(trains))
    assert stage_weight("compare_adjusted", "compare") == REFERENCE_SECONDS["compare_adjusted"]


def test_every_default_stage_has_a_measured_weight_and_the_line_reads_well():
    assert {name for name, _ in ordered_stages()} == set(REFERENCE_SECONDS)
    done = {"generate": ("generate", 41.2)}
    line = eta_line(done, [("tensorize", "tensorize"), ("train_ae_t1", "train")])
    assert line == "stage 2/3 tensorize: about 7 min 25 s left (this stage about 1 min 22 s)"
    assert eta_line({}, [("generate", "generate")]) == ("stage 1/1 generate: time left estimated once a stage has "
                                                        "finished")
