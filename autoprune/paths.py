"""Where the bundled Hydra configs live, in a source checkout and in an installed wheel."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    """Return the directory holding `search.yaml` and the config groups."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "search.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"autoprune's conf/ directory is missing next to {package}")


def group_choices(group: str) -> list[str]:
    """Return the option names of a config group, sorted."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def groups() -> list[str]:
    """Return the names of all config groups."""
    return sorted(p.name for p in config_dir().iterdir() if p.is_dir())
