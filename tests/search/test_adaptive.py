"""Adaptive measurement: the learnt correction of the latency model, its uncertainty, and
which trials it measures."""

from __future__ import annotations

import math
import random

import pytest

from autoprune.search.adaptive import WARMUP, Learner, LogLinear, could_enter_front, describe_learnt


def test_the_line_recovers_a_devices_scale_and_slope_and_grows_sure():
    fit = LogLinear()
    assert fit.estimate(2.0) == (2.0, math.inf)  # nothing measured: the prediction, unsure
    rng = random.Random(0)
    for _ in range(30):  # the device: 3x the prediction's scale, sub-linear, 2% noise
        p = math.exp(rng.uniform(-2, 1))
        fit.add(p, 3.0 * p ** 0.8 * math.exp(rng.gauss(0, 0.02)))
    ms, sigma = fit.estimate(1.0)
    assert ms == pytest.approx(3.0, rel=0.03)
    assert 0.01 < sigma < 0.04
    # Far outside what was measured, the interval widens.
    assert fit.estimate(math.exp(4))[1] > 1.3 * sigma


def test_two_measurements_give_a_ratio_and_an_interval():
    fit = LogLinear()
    fit.add(1.0, 2.0)
    assert fit.estimate(3.0) == (pytest.approx(6.0), math.inf)  # one: a ratio, no spread yet
    fit.add(2.0, 4.4)
    ms, sigma = fit.estimate(1.0)
    assert 2.0 < ms < 2.2 and 0 < sigma < 0.2


def test_could_enter_front_only_when_no_finished_trial_is_as_good_and_as_fast():
    finished = [(0.99, 1.0), (0.95, 0.5)]
    assert not could_enter_front(0.95, 0.6, finished)  # (0.95, 0.5) dominates it
    assert could_enter_front(0.96, 0.6, finished)  # better than anything as fast
    assert could_enter_front(0.90, 0.4, finished)  # faster than anything
    assert could_enter_front(0.5, 0.1, [])


def _learner(slope: float = 1.0, noise: float = 0.01, n: int = WARMUP) -> Learner:
    learner, rng = Learner(), random.Random(1)
    for i in range(n):
        p = 0.2 + 0.1 * i
        learner.measured_one(f"w{i}", p, 2.0 * p ** slope * math.exp(rng.gauss(0, noise)))
    return learner


def test_the_learner_measures_while_warming_up_then_only_what_could_be_on_the_front():
    learner = _learner(n=WARMUP - 1)
    assert learner.should_measure("a", 0.5, None)  # still warming up
    learner = _learner()
    assert not learner.should_measure("a", 0.5, None)  # sure, score unknown: predicted
    learner.finished_one(0.99, 0.6)
    assert not learner.should_measure("b", 0.5, 0.95)  # 1.0 ms at best: dominated
    assert learner.should_measure("c", 0.2, 0.95)  # 0.4 ms: faster than anything finished
    assert learner.should_measure("d", 0.5, 0.995)  # better than anything finished


def test_an_unsure_learner_measures():
    noisy = _learner(noise=0.5, n=WARMUP + 4)
    assert not math.isfinite(noisy.model.estimate(0.5)[1]) or noisy.model.estimate(0.5)[1] > 0.15
    assert noisy.should_measure("a", 0.5, None)


def test_the_summary_counts_trials_and_scores_estimates_made_before_each_measurement():
    learner = Learner()
    learner.measured_one("", 1.0, 2.0)  # the base model: learnt from, not a trial
    learner.measured_one("t1", 2.0, 4.0)  # estimated 4.0 from the base's ratio: exact
    learner.measured_one("t2", 1.0, 2.5)  # estimated about 2.0: 20% off
    learner.estimate("t3", 1.0)  # predicted only
    summary = learner.summary()
    assert summary["latency_measured_trials"] == 2 and summary["latency_unmeasured_trials"] == 1
    # t1's estimate had no interval yet (one measurement): only t2's error counts.
    assert summary["latency_model_error"] == pytest.approx(abs(2.0 - 2.5) / 2.5, rel=0.05)
    line = describe_learnt(summary)
    assert line.startswith("adaptive measurement: measured 2 of 3 trials, 1 predicted instead")
    assert "off by 20.0% on average" in line
