"""Shared fixtures: typed settings from the bundled config, small and quick."""

from __future__ import annotations

import pytest
import ray

from autoprune.cli import compose
from autoprune.config import Settings, settings_from_dict


def pytest_addoption(parser):
    parser.addoption("--extended", action="store_true",
                     help="also run the tests marked extended (15 to 23 minutes more on 2 cores)")


def pytest_collection_modifyitems(config, items):
    """Tests marked `extended` are skipped, saying how to run them, unless --extended."""
    if config.getoption("--extended"):
        return
    skip = pytest.mark.skip(reason="extended suite: python -m pytest --extended")
    for item in items:
        if "extended" in item.keywords:
            item.add_marker(skip)


def make_settings(*overrides: str) -> Settings:
    """Settings composed from conf/ exactly as the CLI would, with overrides."""
    return settings_from_dict(compose("search", list(overrides)))


def xy(dataset):
    """(inputs, labels) of an in-memory split (a TensorDataset)."""
    return dataset.tensors


def classification(data, batch_size: int = 64, **loading):
    """The classification workload of `data`."""
    from autoprune.tasks import Classification
    from autoprune.workload import Loading, Workload

    return Workload(Classification(), data, Loading(batch_size, **loading))


def epochs(workload, count: int) -> int:
    """Steps in `count` passes over the workload's training split."""
    import math

    return count * math.ceil(len(workload.data.train) / workload.loading.batch_size)


def trained_resnet(data, width: int, epochs_: int, lr: float):
    """A small built-in ResNet, seeded and briefly trained on `data`."""
    import torch

    from autoprune.models.resnet import ResNet
    from autoprune.training import TrainSpec, train

    torch.manual_seed(0)
    model = ResNet(width=width, blocks_per_stage=1)
    work = classification(data)
    train(model, work, TrainSpec(steps=epochs(work, epochs_), lr=lr))
    return model.eval()


@pytest.fixture
def settings_for():
    return make_settings


@pytest.fixture(scope="session")
def trained_bases(tmp_path_factory):
    """A cache folder holding the small ResNet that the end-to-end searches start from,
    trained once per session exactly as `search` would train it."""
    from autoprune import specs
    from autoprune.models.base import prepare_base_model
    from tests.search.test_search_e2e import QUICK, SMALL_RESNET

    folder = tmp_path_factory.mktemp("bases")
    settings = make_settings(*SMALL_RESNET, *QUICK, f"cache_dir={folder}")
    prepare_base_model(settings.model, settings.data, specs.train_spec(settings, base=True),
                       specs.workload(settings), settings.cache_dir, lambda _: None)
    return folder


@pytest.fixture
def warm_cache(tmp_path, trained_bases):
    """tmp_path/cache with that base model already in it (a copy: nothing else is shared
    between tests, latency caches included)."""
    return copy_base(trained_bases, tmp_path / "cache")


@pytest.fixture(scope="session")
def store_templates(tmp_path_factory):
    """Empty MLflow and Optuna SQLite stores, their tables created once per session: on a new
    file MLflow runs all its schema migrations (about 2.5 s a study on 2 cores)."""
    import optuna
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("stores")
    MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    optuna.storages.RDBStorage(f"sqlite:///{folder / 'optuna.db'}")
    return folder


def copy_stores(templates, folder) -> None:
    """Put the empty stores into `folder`, where a study run there would create them."""
    import shutil

    for name in ("mlflow.db", "optuna.db"):
        shutil.copyfile(templates / name, folder / name)


@pytest.fixture
def stores(tmp_path, store_templates):
    """tmp_path with the empty stores in it, as the first study there would leave them
    before its first run."""
    copy_stores(store_templates, tmp_path)
    return tmp_path


def copy_base(bases, cache):
    """Put the session's trained base model into the cache folder `cache`; returns `cache`."""
    import shutil

    shutil.copytree(bases / "base", cache / "base")
    return cache


@pytest.fixture
def refused(capsys, monkeypatch):
    """`python -m autoprune <args>` for an input refused before any work: run in this
    process (a refusal must come before Hydra starts the job, so nothing of it lingers), as
    (exit status, stderr); `test_missing_checkpoint_is_refused_before_anything_is_written`
    checks the same path in a process of its own."""
    from autoprune.cli import main

    def run(*args: str, cwd) -> tuple[int, str]:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            main(list(args))
        except SystemExit as exc:
            return exc.code, capsys.readouterr().err
        return 0, capsys.readouterr().err

    return run


@pytest.fixture(scope="module")
def local_ray():
    """A private Ray for one module's actors (benches, gates, the weight store)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 1024 * 1024)
    yield
    ray.shutdown()
