"""Objects built from `_target_` configs with Hydra's `instantiate` (nested `_target_`s and
`_partial_` included): the one place the core asks Hydra for anything.

Configs arrive as plain dicts (resolved on the driver), so workers build the same objects
from the same data. Failures become one-line UserErrors naming the config key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autoprune.errors import UserError

RESERVED = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")


def instantiate(config: Mapping[str, Any], key: str, drop: tuple[str, ...] = (),
                **kwargs: Any) -> Any:
    """Call `config["_target_"]` with the rest of `config` (minus `drop`) and `kwargs`, nested
    targets built first; raises UserError naming `key` on any failure."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    target = config.get("_target_")
    if not isinstance(target, str) or "." not in target:
        raise UserError(f"{key}._target_ must name an importable callable like "
                        f"pkg.module.fn, got {target!r}")
    node = {k: v for k, v in config.items() if k not in drop}
    try:
        return hydra_instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as exc:
        raise UserError(f"{key}: {_reason(exc)}") from exc
    except Exception as exc:  # the user's own code failed while building the object
        raise UserError(f"{key}._target_ {target} could not be built: "
                        f"{type(exc).__name__}: {_first(str(exc))}") from exc


def _reason(exc: BaseException) -> str:
    """Hydra's message without its pointer to HYDRA_FULL_ERROR, and the deepest cause."""
    own = _first(str(exc)).split(", set env var HYDRA_FULL_ERROR")[0].rstrip(":")
    cause = exc.__cause__ or exc.__context__
    deepest = None
    while cause is not None:
        deepest = cause
        cause = cause.__cause__ or cause.__context__
    if deepest is None:
        return own
    return f"{own} ({type(deepest).__name__}: {_first(str(deepest))})"


def _first(text: str) -> str:
    lines = [s.strip() for s in text.strip().splitlines() if s.strip()]
    return (lines[0] if lines else "")[:300]
