"""`python -m autoprune <command> [hydra overrides]`, and the `autoprune` script.

A command's process ends as soon as its work is done and flushed. Tearing the interpreter
down afterwards (freeing torch, Ray's core worker, MLflow and SQLAlchemy module by module)
takes about 2.5 s on 2 cores and saves nothing: the exit handlers that flush and close things
(Ray's shutdown, MLflow's end of run, logging's) still run first; only the teardown is skipped.
"""

import atexit
import os
import sys

_status: list[int] = []  # the exit status, once the command has ended with one


def _leave() -> None:
    """Registered before anything else, so it runs after every other exit handler."""
    if _status:
        import logging

        logging.shutdown()  # in case logging registered its own handler before this one
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(_status[0])


atexit.register(_leave)


# What the commands import; a device with only autoprune[bench] has none of them.
SEARCH_STACK = ("torch", "torch_pruning", "hydra", "optuna", "mlflow", "sklearn")


def missing_stack() -> list[str]:
    from importlib.util import find_spec

    return [name for name in SEARCH_STACK if find_spec(name) is None]


def main() -> None:
    """Run one command; its exit status is kept for the quick exit (an uncaught exception
    keeps Python's own handling, traceback and all)."""
    missing = missing_stack()
    if missing:
        print(f"autoprune: error: the commands need {', '.join(missing)}, which this environment "
              'lacks; install them with: pip install "autoprune[search]" (autoprune[bench] '
              "alone serves a device that measures for a study, with no commands)",
              file=sys.stderr)
        _status.append(2)
        sys.exit(2)
    from autoprune.cli import main as run

    try:
        run()
    except SystemExit as exc:
        code = exc.code
        if code is None or isinstance(code, int):
            _status.append(code or 0)
        raise
    _status.append(0)


if __name__ == "__main__":
    main()
