"""The task role: objectives compare in their direction, outputs are read whatever their
form, the built-in tasks score what they promise, and a user's task plugs in."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from autoprune.errors import UserError
from autoprune.specs import build_task
from autoprune.tasks import Classification, LanguageModel, Objective, model_output
from tests.conftest import make_settings


def test_objectives_compare_in_their_direction():
    accuracy, perplexity = Objective("accuracy", "maximize"), Objective("perplexity", "minimize")
    assert accuracy.better(0.9, 0.8) and not accuracy.better(0.8, 0.9)
    assert perplexity.better(4.0, 5.0) and not perplexity.better(5.0, 4.0)
    assert accuracy.best([0.7, 0.9, 0.8]) == 0.9 and perplexity.best([5.0, 4.0, 6.0]) == 4.0
    assert accuracy.worsening(0.9, 0.88) == pytest.approx(0.02)
    assert perplexity.worsening(4.0, 4.2) == pytest.approx(0.2)
    assert perplexity.relative_worsening(4.0, 4.2) == pytest.approx(0.05)
    assert perplexity.bound(4.0, 0.2) == pytest.approx(4.2)
    assert perplexity.meets(4.1, 4.2) and not perplexity.meets(4.3, 4.2)
    assert accuracy.meets(0.95, 0.9) and not accuracy.meets(0.85, 0.9)
    assert accuracy.format(0.98765) == "98.77%" and perplexity.format(4.2345) == "4.234"
    with pytest.raises(ValueError):
        Objective("loss", "down")


@pytest.mark.parametrize("raw", [
    torch.ones(2, 3), (torch.ones(2, 3), torch.zeros(1)), [torch.ones(2, 3)],
    {"logits": torch.ones(2, 3)}, SimpleNamespace(logits=torch.ones(2, 3), loss=None),
])
def test_outputs_are_read_in_every_common_form(raw):
    assert torch.equal(model_output(raw), torch.ones(2, 3))


def test_an_output_without_a_tensor_is_named():
    with pytest.raises(TypeError, match="returns str"):
        model_output("logits")


def test_classification_scores_accuracy_and_cross_entropy():
    task = Classification()
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    metrics = task.evaluate(nn.Identity(), [(logits, labels)])
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["cross_entropy"] == pytest.approx(
        float(nn.functional.cross_entropy(logits, labels)))
    assert task.weak({"accuracy": 0.1}, torch.zeros(1, 10)) is not None
    assert task.weak({"accuracy": 0.2}, torch.zeros(1, 10)) is None


def test_language_model_perplexity_is_exp_of_the_next_token_loss():
    task = LanguageModel()
    tokens = torch.tensor([[1, 2, 3, 1]])
    logits = torch.zeros(1, 3, 4)
    logits[0, torch.arange(3), torch.tensor([2, 3, 1])] = 5.0  # confident and right

    class Fixed(nn.Module):
        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            assert torch.equal(inputs, tokens[:, :-1]), "the model reads all but the last"
            return logits

    metrics = task.evaluate(Fixed(), [tokens])
    nll = float(nn.functional.cross_entropy(logits.reshape(-1, 4), tokens[0, 1:]))
    assert metrics["nll"] == pytest.approx(nll)
    assert metrics["perplexity"] == pytest.approx(math.exp(nll))
    assert metrics["bits_per_token"] == pytest.approx(nll / math.log(2))
    assert task.weak({"perplexity": 200.0}, torch.zeros(1, 1, 256)) is not None
    assert task.weak({"perplexity": 5.0}, torch.zeros(1, 1, 256)) is None


def test_distillation_is_zero_for_the_teacher_itself():
    task = LanguageModel()
    logits = torch.randn(2, 5, 7)
    assert float(task.distill(logits, logits, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(task.distill(logits, torch.randn(2, 5, 7), 2.0)) > 0


def test_a_users_task_is_built_from_its_target_with_its_arguments():
    settings = make_settings("task._target_=examples.regression.Regression")
    task = build_task(settings.task)
    assert task.objective == Objective("mse", "minimize")


@pytest.mark.parametrize(("target", "message"), [
    ("examples.regression.Curve", "lacks metric, direction, inputs, output, loss, evaluate"),
    ("examples.regression.NoSuchTask", "cannot import|has no callable"),
])
def test_a_bad_task_is_a_user_error(target, message):
    with pytest.raises(UserError, match=message):
        build_task(make_settings(f"task._target_={target}").task)


class _DictDataset(torch.utils.data.Dataset):
    """Hugging Face style items: token ids and a label, the label being whether token 1
    appears."""

    def __init__(self, count: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(2, 20, (count, 6), generator=generator)
        self.ids[::2, 3] = 1
        self.labels = (self.ids == 1).any(1).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "attention_mask": torch.ones(6, dtype=torch.long),
                "labels": self.labels[index]}


def test_a_hugging_face_classifier_trains_and_is_scored_on_dict_batches():
    transformers = pytest.importorskip("transformers")
    from autoprune.data.splits import DataSplits
    from autoprune.training import TrainSpec, evaluate, train
    from tests.conftest import classification

    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=20, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=2))
    data = DataSplits(_DictDataset(256, 0), _DictDataset(128, 1), _DictDataset(128, 2), "t")
    workload = classification(data, batch_size=32)
    task = workload.task
    batch = workload.items(4)
    assert set(task.inputs(batch)) == {"input_ids", "attention_mask"}
    assert torch.equal(task.labels(batch), batch["labels"])
    with pytest.raises(ValueError, match="labels or label"):
        task.labels({"input_ids": batch["input_ids"]})
    before = evaluate(model, workload)["accuracy"]
    train(model, workload, TrainSpec(steps=60, lr=3e-3, optimizer="adamw", schedule="constant"))
    after = evaluate(model, workload)
    assert after["accuracy"] > max(before, 0.9)  # the rule is learnable: the labels are read
