"""What a study records about where it ran: package versions and the project's commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

VERSIONED = ("autoprune", "torch", "optuna", "ray", "mlflow", "hydra-core", "torch-pruning",
             "onnx", "onnxruntime", "numpy", "scikit-learn")


def package_versions() -> str:
    """`name=version` of the packages a study's results depend on, comma-separated."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in VERSIONED:
        try:
            found.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            found.append(f"{name}=absent")
    return ",".join(found)


def git_commit() -> str:
    """The project checkout's commit (`+dirty` with uncommitted changes), or why there is none."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return "not a git checkout"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "git unavailable"
    return head.stdout.strip() + ("+dirty" if dirty else "")
