"""A study's setup: the base model as given or trained, scored like the trials; a base at
chance stops the study; a model that does not fit the data or the task is named."""

from __future__ import annotations

import pytest

from autoprune import specs
from autoprune.errors import UserError
from autoprune.study.prepare import finetuned_reference, prepare
from autoprune.study.run import trial_settings
from autoprune.training import evaluate
from tests.conftest import make_settings
from tests.search.test_search_e2e import QUICK, SMALL_RESNET


def _trained_weights(warm_cache) -> str:  # noqa: ANN001
    return str(next((warm_cache / "base").glob("resnet-*.pt")))


def test_a_pretrained_model_is_used_as_it_is_and_scored_like_the_trials(warm_cache):
    settings = make_settings(*QUICK, "model=custom",
                             "model._target_=tests.fixtures.pretrained.resnet",
                             f"+model.weights={_trained_weights(warm_cache)}",
                             "model.pretrained=true", f"cache_dir={warm_cache / 'other'}")
    lines: list[str] = []
    prepared = prepare(settings, lines.append)
    assert prepared.base.source == "pretrained"
    assert not any("training the base model" in line for line in lines)
    assert not (warm_cache / "other").exists(), "nothing trained, nothing cached"
    own = evaluate(prepared.base.model, specs.workload(settings))["accuracy"]
    assert prepared.metric == own > 0.5


def test_an_untrained_pretrained_model_is_refused_at_chance(tmp_path):
    settings = make_settings(*QUICK, *SMALL_RESNET, "model.pretrained=true",
                             f"cache_dir={tmp_path}")
    with pytest.raises(UserError, match=r"the base model \(pretrained\) is no better than "
                                        r"chance: accuracy .* is at chance level for 10 "
                                        r"classes .*set search.allow_weak_base=true"):
        prepare(settings, lambda _: None)
    allowed = make_settings(*QUICK, *SMALL_RESNET, "model.pretrained=true",
                            "search.allow_weak_base=true", f"cache_dir={tmp_path}")
    assert prepare(allowed, lambda _: None).metric < 0.15


def test_the_fine_tuned_twin_leaves_the_base_model_as_it_was(warm_cache):
    import torch

    settings = make_settings(*QUICK, *SMALL_RESNET, f"cache_dir={warm_cache}")
    prepared = prepare(settings, lambda _: None)
    before = {k: v.clone() for k, v in prepared.base.model.state_dict().items()}
    value = finetuned_reference(prepared, trial_settings(settings), lambda _: None)
    assert 0.5 < value <= 1.0  # chance is 0.1
    after = prepared.base.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_model_whose_output_does_not_fit_the_task_is_named(tmp_path):
    settings = make_settings(*QUICK, "task=language_model", "model=custom",
                             "model._target_=tests.fixtures.unprunable.linear_probe",
                             f"cache_dir={tmp_path}")
    with pytest.raises(UserError, match="the data's inputs do not fit the model"):
        prepare(settings, lambda _: None)
