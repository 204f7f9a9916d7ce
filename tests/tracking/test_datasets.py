"""The study's data splits as MLflow dataset inputs, logged to a real SQLite store."""

from __future__ import annotations

import json

import torch
from torch.utils.data import TensorDataset

from autoprune.data.splits import DataSplits
from autoprune.tasks import Objective
from autoprune.tracking.datasets import split_inputs
from autoprune.tracking.mlflow import StudyTracker
from tests.conftest import make_settings


def _splits(sizes=(6, 3, 2), fingerprint="f" * 64) -> DataSplits:
    return DataSplits(*(TensorDataset(torch.zeros(n, 1)) for n in sizes), fingerprint)


def test_each_split_is_a_dataset_with_its_context_size_and_digest_read_back(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = StudyTracker(uri, "unit", Objective("accuracy", "maximize"))
    run_id = tracker.start_study("s-1", "cpu", {}, {})
    tracker.log_inputs(split_inputs(make_settings().data, _splits()))

    logged = tracker.client.get_run(run_id).inputs.dataset_inputs
    found = {i.dataset.name: (i.tags[0].value, json.loads(i.dataset.profile)["num_rows"])
             for i in logged}
    assert found == {"digits-train": ("training", 6), "digits-val": ("validation", 3),
                     "digits-test": ("test", 2)}
    assert {i.dataset.source_type for i in logged} == {"code"}
    assert len({i.dataset.digest for i in logged}) == 3


def test_the_digest_follows_the_data_and_the_source_names_where_it_came_from(tmp_path):
    digits = make_settings().data
    same = [d.dataset.digest for d in split_inputs(digits, _splits())]
    assert same == [d.dataset.digest for d in split_inputs(digits, _splits())]
    other = [d.dataset.digest for d in split_inputs(digits, _splits(fingerprint="e" * 64))]
    resized = [d.dataset.digest for d in split_inputs(digits, _splits(sizes=(5, 4, 2)))]
    assert all(a != b for a, b in zip(same, other, strict=True))
    assert resized[:2] != same[:2] and resized[2] == same[2]

    arrays = make_settings("data=arrays", f"data.path={tmp_path / 'x.npz'}").data
    source = split_inputs(arrays, _splits())[0].dataset
    assert source.source_type == "local"
    assert json.loads(source.source) == {"uri": str((tmp_path / "x.npz").resolve())}
    own = make_settings("data=dataset", "data.train._target_=my.pkg.Images").data
    assert json.loads(split_inputs(own, _splits())[0].dataset.source) == {
        "tags": {"autoprune.data": "dataset", "_target_": "my.pkg.Images"}}
