"""The command line: help, resolved config, and one-line errors with exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoprune.cli import compose
from autoprune.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: str | None = None, env_extra: dict | None = None
        ) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "autoprune", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)


def test_help_lists_groups_and_choices(tmp_path):
    result = cli("search", "--help", cwd=str(tmp_path))
    assert result.returncode == 0
    for line in ("hardware: cpu, cuda, jetson, jetson_agx_orin, jetson_nano, "
                 "jetson_orin_nano_super, jetson_orin_nx, jetson_xavier_nx",
                 "search: amc, gp, nsga2, nsga3, random, refine, tpe, uniform",
                 "model: custom, gpt, mlp, mobilenet, resnet, resnet20, resnet8, vgg, vit",
                 "data: arrays, dataset, digits, synthetic, text",
                 "pruning: all, default, language_model",
                 "task: classification, language_model"):
        assert line in result.stdout
    from autoprune.pruning import STRATEGIES
    from autoprune.pruning.criteria import CRITERIA

    for name, strategy in STRATEGIES.items():
        assert f"{name:<20} {strategy.description}" in result.stdout
    assert ", ".join(CRITERIA) in result.stdout
    assert not (tmp_path / "mlflow.db").exists()


def test_cfg_job_prints_resolved_config(tmp_path):
    result = cli("search", "hardware=jetson", "search.n_trials=3", "--cfg", "job",
                 cwd=str(tmp_path))
    assert result.returncode == 0
    assert "name: jetson" in result.stdout
    assert "n_trials: 3" in result.stdout
    assert "study_name: resnet-digits-jetson" in result.stdout
    assert "${" not in result.stdout


def test_top_level_usage_lists_commands():
    result = cli()
    assert result.returncode == 0
    assert "search" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["search", "hardware=nosuchdevice"],
         "unknown hardware 'nosuchdevice'; choose one of: cpu, cuda, jetson, jetson_agx_orin"),
        (["search", "model=nosuch"],
         "unknown model 'nosuch'; choose one of: custom, gpt, mlp, mobilenet, resnet, resnet20, "
         "resnet8, vgg, vit"),
        (["search", "search.n_trail=3"], "unknown key 'search.n_trail'; valid keys under search:"),
        (["search", "foo=1"], "unknown key 'foo'; valid keys at the top level:"),
        (["search", "search.n_trials=0"], "search.n_trials must be at least 1"),
        (["search", "pruning.ratio_max=1.0"], "pruning ratios must lie in [0, 1)"),
        (["search", "pruning.ratio_min=-0.1"], "pruning ratios must lie in [0, 1)"),
        (["search", "search.n_trials=-3"], "search.n_trials must be at least 1"),
        (["search", "hardware.measure.timeout_s=0"], "timeout_s > 0"),
        (["search", "pruning.ratio_min=0.6", "pruning.ratio_max=0.5"], "empty range"),
        (["search", "pruning.strategies=[magic]"],
         "unknown pruning.strategies value 'magic'; choose from channel, neuron"),
        (["search", "model=custom"], "model._target_ is required"),
        (["search", "model._target_=nosuchpkg.factory"], "cannot import nosuchpkg"),
        (["search", "seed=abc"], "seed must be a number"),
        (["nosuchcommand"],
         "unknown command 'nosuchcommand'; choose one of: search, latency, calibrate, report, "
         "apply, ui"),
        (["search", "model=custom", "model._target_=torch.nn.Linear", "+model.in_features=5",
          "+model.out_features=10"], "the data's inputs do not fit the model: RuntimeError: "),
        (["search", "model=custom", "model._target_=torch.nn.Flatten"],
         "model Flatten has no prunable groups"),
        (["search", "model.pretrained=true"],
         "the base model (pretrained) is no better than chance: accuracy "),
        (["search", "task=language_model", "model=resnet"],
         "model.num_classes is taken from data.num_classes, which this config does not set"),
        (["search", "finetune.steps=abc"], "finetune.steps must be a number, got 'abc'"),
        (["search", "search=nsga2", "search.options.population_size=1"],
         "search.options do not fit the nsga2 sampler"),
        (["search", "~hardware"], "the hardware group cannot be removed"),
        (["search", "seed=0,1"], "comma-separated values sweep: add -m"),
        (["search", "-m", "seed=0,1", "--cfg", "job"], "--cfg shows the config of one run"),
        (["search", "-m", "search=tpe,bogus"], "unknown search 'bogus'; choose one of"),
        (["search", "-m", "seed=0,1", "search.n_trials=0,4"],
         "search.n_trials must be at least 1"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, refused, args, expected):
    code, stderr = refused(*args, cwd=tmp_path)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("autoprune: error: ")
    assert expected in lines[0]
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == [], "a bad input must not write anything"


def _bad_files(folder):
    """Files a user might point autoprune at by mistake."""
    import numpy as np
    import torch

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo never run",))

    (folder / "corrupt.pt").write_bytes(os.urandom(4096))
    torch.save({"weight": Payload()}, folder / "code.pt")
    torch.save(torch.nn.Linear(3, 4).state_dict(), folder / "other.pt")
    np.savez(folder / "x_only.npz", x=np.zeros((10, 1, 16, 16), np.float32))
    np.savez(folder / "short_y.npz", x=np.zeros((10, 1, 16, 16), np.float32),
             y=np.zeros(7, np.int64))
    np.savez(folder / "small_x.npz", x=np.zeros((10, 1, 8, 8), np.float32),
             y=np.zeros(10, np.int64))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model.checkpoint={in}/missing.pt"], "model.checkpoint '{in}/missing.pt' does not exist"),
        (["model.checkpoint={in}/corrupt.pt"],
         "model.checkpoint '{in}/corrupt.pt' is not a torch.save file"),
        (["model.checkpoint={in}/code.pt"],
         "model.checkpoint '{in}/code.pt' holds pickled objects (posix.system), which are "
         "never loaded"),
        (["model.checkpoint={in}/other.pt"],
         "model.checkpoint '{in}/other.pt' does not fit ResNet: 92 missing keys (stem.0.weight, "
         "stem.1.weight, stem.1.bias, ...); 2 unexpected keys (weight, bias)"),
        (["data=arrays", "data.path={in}/missing.npz"],
         "data.path '{in}/missing.npz' does not exist"),
        (["data=arrays", "data.path={in}/x_only.npz"],
         "holds x; it needs arrays named x (inputs) and y (labels)"),
        (["data=arrays", "data.path={in}/short_y.npz"],
         "data.path y must be 10 integer labels, got int64 of shape (7,)"),
        (["data=arrays", "data.path={in}/small_x.npz"],
         "data.path x has shape (10, 1, 8, 8); expected (N, 1, 16, 16)"),
        (["model=custom", "model._target_=tests.fixtures.unprunable.linear_probe"],
         "model linear_probe has no prunable groups"),
        (["search.storage=sqlite:///{in}/no/such/folder/optuna.db"],
         "search.storage sqlite:///{in}/no/such/folder/optuna.db: folder {in}/no/such/folder "
         "does not exist"),
        (["tracking.uri=sqlite:///{in}/no/such/folder/mlflow.db"],
         "folder {in}/no/such/folder does not exist"),
    ],
    ids=["missing-checkpoint", "corrupt-checkpoint", "pickled-code-checkpoint",
         "mismatched-checkpoint", "missing-data", "data-without-labels", "labels-too-few",
         "data-wrong-shape", "no-prunable-groups", "storage-folder-missing",
         "tracking-folder-missing"],
)
def test_bad_files_are_refused_in_one_line_before_anything_is_written(tmp_path, refused, args,
                                                                    expected):
    inputs, work = tmp_path / "inputs", tmp_path / "work"
    inputs.mkdir()
    work.mkdir()
    _bad_files(inputs)
    code, stderr = refused("search", *(a.replace("{in}", str(inputs)) for a in args),
                           f"cache_dir={tmp_path / 'cache'}", cwd=work)
    assert code == 2, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autoprune: error: "), stderr
    assert expected.replace("{in}", str(inputs)) in lines[0]
    assert list(work.iterdir()) == [], "a bad input must not write anything"
    assert not (tmp_path / "cache" / "base").exists() or not any(
        (tmp_path / "cache" / "base").iterdir()), "nor train and cache a base model"


def test_missing_checkpoint_is_refused_before_anything_is_written(tmp_path):
    result = cli("search", f"model.checkpoint={tmp_path / 'missing.pt'}",
                 f"cache_dir={tmp_path / 'cache'}", cwd=str(tmp_path))
    assert result.returncode == 2
    assert "missing.pt' does not exist" in result.stderr
    assert list(tmp_path.iterdir()) == [], "a bad input must not write anything"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("tracking.uri=http://127.0.0.1:9", "tracking.uri http://127.0.0.1:9 cannot be reached"),
        ("ray.address=127.0.0.1:1", "ray.address 127.0.0.1:1 cannot be reached"),
    ],
)
def test_unreachable_servers_are_refused_before_any_work(tmp_path, override, expected):
    result = cli("search", override, f"cache_dir={tmp_path / 'cache'}", cwd=str(tmp_path))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [], "a bad input must not write anything"


def test_compose_applies_overrides():
    cfg = compose("search", ["hardware=jetson", "search.n_trials=5", "seed=3"])
    assert cfg["hardware"]["name"] == "jetson"
    assert cfg["search"]["n_trials"] == 5
    assert cfg["seed"] == 3
    assert cfg["study_name"] == "resnet-digits-jetson"


def test_compose_rejects_unknown_group_choice():
    with pytest.raises(UserError, match="choose one of: cpu, cuda, jetson"):
        compose("search", ["hardware=tpu"])


def test_a_sweep_is_checked_value_by_value():
    from autoprune.cli import variants

    assert variants(["hardware=jetson"]) == [["hardware=jetson"]]
    assert variants(["seed=0,1,2", "hardware=jetson", "search=tpe,nsga2"]) == [
        ["seed=0", "hardware=jetson", "search=tpe"],
        ["seed=1", "hardware=jetson", "search=tpe"],
        ["seed=2", "hardware=jetson", "search=tpe"],
        ["seed=0", "hardware=jetson", "search=nsga2"],
    ]


def test_shell_completion_prints_the_script(tmp_path):
    result = cli("search", "-sc", "install=bash", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "complete" in result.stdout and "hydra_bash_completion" in result.stdout
