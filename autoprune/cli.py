"""Command dispatch and config checking for `python -m autoprune <command> [overrides]`.

Hydra 1.3 has no subcommands: the command is popped from argv and the matching config
(`conf/<command>.yaml`) is composed. Overrides are checked before Hydra runs the job, so a
typo costs one clear line and exit status 2, not a traceback.
"""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoprune.commands import COMMANDS
from autoprune.errors import StudyFailed, UserError
from autoprune.paths import config_dir, group_choices, groups

EXIT_USAGE = 2
HELP_FLAGS = ("-h", "--help", "--hydra-help")
COMPLETION_FLAGS = ("-sc", "--shell-completion")
MULTIRUN_FLAGS = ("-m", "--multirun")
# smoke=true: a study's budget cut to what the test suite can afford, everything else kept.
SMOKE = ("search.n_trials=3", "finetune.steps=17", "finetune.base_steps=34",
         "search.sensitivity_ratios=[0.5]", "hardware.measure.warmup=3",
         "hardware.measure.repeats=5", "hardware.measure.number=5")


def _fail(message: str) -> None:
    print(f"autoprune: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _usage() -> str:
    lines = ["usage: python -m autoprune <command> [group=choice ...] [key=value ...]", "",
             "commands:"]
    for name, module in COMMANDS.items():
        lines.append(f"  {name:<10}{importlib.import_module(module).SUMMARY}")
    lines += ["", "Run `python -m autoprune <command> --help` for its groups and options."]
    return "\n".join(lines)


def _parse(overrides: Sequence[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed.extend(parser.parse_overrides([text]))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot parse override {text!r}: {first}") from exc
    return parsed


def variants(overrides: Sequence[str]) -> list[list[str]]:
    """The override lists a sweep (`seed=0,1 search=tpe,nsga2`) runs, as few as check every
    value: all sweeps at their first value, then each other value of each sweep in turn."""
    parsed = _parse(overrides)
    sweeps = {i: list(o.sweep_string_iterator()) for i, o in enumerate(parsed)
              if o.is_sweep_override()}
    if not sweeps:
        return [list(overrides)]

    def at(choice: dict[int, str]) -> list[str]:
        return [f"{text.split('=', 1)[0]}={choice[i]}" if i in choice else text
                for i, text in enumerate(overrides)]

    first = {i: values[0] for i, values in sweeps.items()}
    return [at(first)] + [at({**first, i: value}) for i, values in sweeps.items()
                          for value in values[1:]]


def _check_keys(cfg: Any, parsed: list[Any]) -> None:
    from omegaconf import OmegaConf

    group_names = set(groups())
    for override in parsed:
        key = override.key_or_group
        if (key in group_names or override.is_add() or override.is_delete()
                or key.startswith("hydra.") or override.is_hydra_override()):
            continue
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if node is None or not OmegaConf.is_dict(node):
            raise UserError(f"unknown key {key!r}: {parent or key} is not a config section")
        if leaf not in list(node.keys()):
            where = f"under {parent}" if parent else "at the top level"
            valid = ", ".join(sorted(str(k) for k in node.keys()))
            hint = f" (add a new key with +{key}=...)" if parent == "model" else ""
            raise UserError(f"unknown key {key!r}; valid keys {where}: {valid}{hint}")


def compose(command: str, overrides: Sequence[str]) -> dict[str, Any]:
    """Compose `conf/<command>.yaml` with overrides and return it resolved; raises UserError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationKeyError, MissingMandatoryValue

    parsed = _parse(overrides)
    group_overrides = []
    for override in parsed:
        key = override.key_or_group
        if key in groups() and override.is_delete():
            raise UserError(f"the {key} group cannot be removed; choose one of: "
                            f"{', '.join(group_choices(key))}")
        if key in groups():
            choices = group_choices(key)
            value = override.value()
            if not isinstance(value, str) or value not in choices:
                raise UserError(f"unknown {key} {value!r}; choose one of: {', '.join(choices)}")
            group_overrides.append(f"{key}={value}")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            base = hydra_compose(config_name=command, overrides=group_overrides)
            _check_keys(base, parsed)
            try:
                cfg = hydra_compose(config_name=command, overrides=list(overrides))
            except Exception as exc:
                lines = [s for s in str(exc).strip().splitlines() if s.strip()]
                raise UserError(" ".join(lines[:2]) if lines else type(exc).__name__) from exc
    finally:
        GlobalHydra.instance().clear()
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        key = getattr(exc, "full_key", "") or "a value"
        raise UserError(f"{key} is required: set {key}=...") from exc
    except InterpolationKeyError as exc:
        key = getattr(exc, "full_key", "") or "a value"
        missing = str(exc).split("'")[1] if str(exc).count("'") >= 2 else "a key"
        raise UserError(f"{key} is taken from {missing}, which this config does not set "
                        f"(the {missing.split('.')[0]} chosen has none); choose a "
                        f"{key.split('.')[0]} that fits it, or set +{missing}=...") from exc
    except Exception as exc:
        raise UserError(str(exc).strip().splitlines()[0]) from exc
    return resolved  # type: ignore[return-value]


def study_roots() -> list[Path]:
    """Folders whose `studies/` subfolder holds study recipes: the working directory first,
    then the project checkout."""
    roots = [Path.cwd().resolve(), config_dir().resolve().parent]
    return [r for i, r in enumerate(roots) if r not in roots[:i] and (r / "studies").is_dir()]


def study_names() -> list[str]:
    return sorted({p.stem for root in study_roots() for p in (root / "studies").glob("*.yaml")})


def expand_study(overrides: Sequence[str]) -> list[str]:
    """`study=<name>` made into the Hydra overrides that load `studies/<name>.yaml` (a config
    in Hydra's global package), and `smoke=true` into the reduced budget; the user's own
    overrides keep the last word."""
    expanded = list(overrides)
    for text in overrides:
        key, _, value = text.partition("=")
        if key == "study" and value not in ("", "null"):
            root = next((r for r in study_roots() if (r / "studies" / f"{value}.yaml").is_file()),
                        None)
            if root is None:
                raise UserError(f"unknown study {value!r}; choose one of: "
                                f"{', '.join(study_names()) or 'none (no studies/ folder here)'}")
            expanded = [f"hydra.searchpath=[file://{root}]", f"+studies={value}", *expanded]
        if key == "smoke" and value.lower() == "true":
            index = expanded.index(text)
            expanded = [*expanded[:index], *SMOKE, *expanded[index:]]
    return expanded


def _remove_run_dir(output_dir: str) -> None:
    """Bad input found inside the job: leave no Hydra run folder behind (nor empty parents)."""
    import shutil
    from pathlib import Path

    path = Path(output_dir)
    shutil.rmtree(path, ignore_errors=True)
    for parent in list(path.parents)[:2]:
        try:
            parent.rmdir()  # only succeeds when empty
        except OSError:
            break


def _run_hydra(command: str, module: Any, args: list[str]) -> None:
    import hydra
    from omegaconf import DictConfig, OmegaConf

    from autoprune.config import settings_from_dict
    from autoprune.terminal.logfile import logged

    def job(cfg: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig

        output_dir = HydraConfig.get().runtime.output_dir
        try:
            raw = OmegaConf.to_container(cfg, resolve=True)
            settings = settings_from_dict(raw)  # type: ignore[arg-type]
            with logged(Path(output_dir) / f"{command}.log"):
                module.run(settings, output_dir)
        except UserError as exc:
            _remove_run_dir(output_dir)
            _fail(str(exc))
        except StudyFailed as exc:
            print(f"autoprune: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        except KeyboardInterrupt:
            from autoprune.signals import received_signal

            stop = received_signal()
            print(f"autoprune: interrupted ({stop})", file=sys.stderr)
            raise SystemExit(128 + getattr(signal, stop)) from None

    main = hydra.main(config_path=str(config_dir()), config_name=command, version_base="1.3")(job)
    if any(a in ("--cfg", "-c") for a in args) and "--resolve" not in args:
        args = [*args, "--resolve"]  # show values, not ${...} interpolations
    sys.argv = [f"autoprune {command}", *args]
    main()


def _overrides(args: Sequence[str]) -> list[str]:
    """Return the key=value overrides among command-line args, skipping Hydra's flags."""
    overrides, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--cfg", "-c", "--package", "-p", "--info", "-i"):
            skip = arg not in ("--info", "-i")
        elif arg.startswith("-"):
            continue
        else:
            overrides.append(arg)
    return overrides


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: `python -m autoprune <command> [overrides]`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return
    command, rest = args[0], args[1:]
    if command == "reproduce" and rest and "=" not in rest[0] and not rest[0].startswith("-"):
        rest = [f"run={rest[0]}", *rest[1:]]  # the run id may be given bare
    if command not in COMMANDS:
        _fail(f"unknown command {command!r}; choose one of: {', '.join(COMMANDS)}")
    module = importlib.import_module(COMMANDS[command])
    if any(a in HELP_FLAGS + COMPLETION_FLAGS for a in rest):
        _run_hydra(command, module, rest)
        return
    try:
        from autoprune.config import settings_from_dict

        overrides = expand_study(_overrides(rest))
        flags = [a for a in rest if a not in _overrides(rest)]
        runs = variants(overrides)
        multirun = any(a in MULTIRUN_FLAGS for a in flags)
        if len(runs) > 1 and not multirun:
            raise UserError("comma-separated values sweep: add -m to run one job per value")
        if multirun and any(a in ("--cfg", "-c") for a in flags):
            raise UserError("--cfg shows the config of one run: leave out -m, or --cfg")
        check = getattr(module, "check", None)  # a command's own inputs, refused up front
        for run in runs:
            settings = settings_from_dict(compose(command, run))
            if check is not None:
                check(settings)
    except UserError as exc:
        _fail(str(exc))
    _run_hydra(command, module, [*flags, *overrides])
