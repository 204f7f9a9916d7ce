"""The driver's Optuna work per trial, with the study's SQLite store in WAL mode (as a study
opens it) against SQLite's default rollback journal.

The default CPU study's policy space (the ResNet's groups, 22 parameters a trial) is asked and
told through the study's own Tune searcher (`StudySearch`: ask, the define-by-run space, then
tell with the constraints), `--trials` trials a study, each on a fresh store, in alternating
order, `--repeats` times. Writes benchmarks/results/study_store.{json,md} with the command and
commit: milliseconds a trial, median [min, max], and the ratio rollback/WAL per repeat.

    python benchmarks/study_store.py --trials 32 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import optuna
from common import RESULTS, commit, machine, spread

MODES = ("wal", "rollback")


def default_space():  # noqa: ANN201 - the project's PolicySpace and the task's objective
    from autoprune.cli import compose
    from autoprune.config import settings_from_dict
    from autoprune.search.space import PolicySpace
    from autoprune.study.prepare import prepare

    settings = settings_from_dict(compose("search", ["hardware=cpu"]))  # its cache, as a study
    prepared = prepare(settings, lambda line: None)
    pruning = settings.pruning
    return PolicySpace(prepared.choices, pruning.ratio_min, pruning.ratio_max,
                       pruning.ratio_step, pruning.schedules), prepared.task.objective


def one_study(space, objective, mode: str, trials: int, folder: Path,  # noqa: ANN001
              seed: int) -> tuple[float, float]:
    """Milliseconds a trial (ask with the space's parameters, then tell) and the parameters a
    trial had."""
    from autoprune.search.early_stop import EarlyStop
    from autoprune.search.samplers import Constraints
    from autoprune.search.tune_search import StudySearch
    from autoprune.stores import optuna_storage

    url = f"sqlite:///{folder / f'{mode}.db'}"
    # A new file: Optuna alone leaves it in SQLite's default rollback-journal mode.
    storage = optuna_storage(url) if mode == "wal" else optuna.storages.RDBStorage(url)
    stopper = EarlyStop(False, 0.0, 1, objective)
    searcher = StudySearch(space=space, metric=[objective.metric, "latency_ms"],
                           mode=[objective.mode, "min"],
                           sampler=optuna.samplers.RandomSampler(seed=seed),
                           study_name="bench", storage=storage,
                           constraints=Constraints(), stopper=stopper)
    values = random.Random(seed)
    begun = time.perf_counter()
    for number in range(trials):
        searcher.suggest(str(number))
        searcher.on_trial_complete(str(number), {objective.metric: values.random(),
                                                 "latency_ms": values.random()})
    spent = 1000 * (time.perf_counter() - begun) / trials
    return spent, sum(len(t.params) for t in searcher.study.trials) / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, objective = default_space()
    ms: dict[str, list[float]] = {mode: [] for mode in MODES}
    params = []
    for repeat in range(args.repeats):
        order = MODES if repeat % 2 == 0 else MODES[::-1]
        with tempfile.TemporaryDirectory() as folder:
            for mode in order:
                spent, each = one_study(space, objective, mode, args.trials, Path(folder),
                                        repeat)
                ms[mode].append(spent)
                params.append(each)
        print(f"repeat {repeat}: " + ", ".join(f"{m} {ms[m][-1]:.1f} ms" for m in MODES),
              flush=True)
    ratios = [r / w for r, w in zip(ms["rollback"], ms["wal"], strict=True)]
    result = {"command": "python benchmarks/study_store.py " + " ".join(sys.argv[1:]),
              "commit": commit(), "machine": machine(), "trials": args.trials,
              "parameters_per_trial": sum(params) / len(params),
              "ms_per_trial": ms, "ratio_rollback_over_wal": ratios}
    (RESULTS / "study_store.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "study_store.md").write_text(
        f"# The driver's Optuna work per trial\n\n`{result['command']}` at commit "
        f"{result['commit']} on {result['machine']}: the default CPU study's policy space, "
        f"{args.trials} trials a study ({result['parameters_per_trial']:.1f} parameters a trial, "
        "random policies) on a fresh SQLite store, ask and tell through the "
        f"study's searcher, {args.repeats} repeats (median [min, max]).\n\n"
        "| store | ms a trial |\n|---|---|\n"
        f"| WAL (as a study opens it) | {spread(ms['wal'], 1)} |\n"
        f"| rollback journal (SQLite's default) | {spread(ms['rollback'], 1)} |\n\n"
        f"Rollback over WAL: {spread(ratios)}x.\n")
    print((RESULTS / "study_store.md").read_text())


if __name__ == "__main__":
    main()
