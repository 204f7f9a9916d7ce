"""Checking config values against the schema's annotations, with one-line errors."""

from __future__ import annotations

import dataclasses
from typing import Any

from autoprune.errors import UserError


def parse_yaml(text: str, what: str) -> Any:
    """`text` as plain YAML data: safe_load, so no tag can build an object or run code.

    Raises UserError naming `what` when it is not valid YAML or uses such a tag."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:200]
        raise UserError(f"{what} is not plain YAML data: {first}") from exc


def typed(cls: type, section: str, values: dict[str, Any]) -> Any:
    """Build dataclass `cls` from `values`, naming the section in any error."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(
            f"unknown key {section}.{unknown[0]}; valid keys: {', '.join(sorted(names))}"
        )
    missing = sorted(f.name for f in dataclasses.fields(cls)
                     if f.name not in values and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING and f.name != "raw")
    if missing:
        raise UserError(f"{section} is missing {', '.join(missing)}")
    checked = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            checked[f.name] = coerce(f"{section}.{f.name}", str(f.type), values[f.name])
    return cls(**checked)


def coerce(name: str, annotation: str, value: Any) -> Any:
    """Check `value` against a field annotation (as written in schema.py) and normalise it."""
    optional = annotation.endswith(" | None")
    base = annotation.removesuffix(" | None")
    if value is None:
        if optional:
            return None
        raise UserError(f"{name} must be set (it is null)")
    if base == "int":
        return number(name, value, int)
    if base == "float":
        return number(name, value, float)
    if base == "bool":
        if not isinstance(value, bool):
            raise UserError(f"{name} must be true or false, got {value!r}")
        return value
    if base == "str":
        if not isinstance(value, str):
            raise UserError(f"{name} must be a string, got {value!r}")
        return value
    if base.startswith("tuple["):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{name} must be a list like [a, b], got {value!r}")
        item = "str" if base == "tuple[str, ...]" else "float"
        return tuple(coerce(name, item, v) for v in value)
    if base.startswith("dict["):
        if not isinstance(value, dict):
            raise UserError(f"{name} must be a mapping, got {value!r}")
        return dict(value)
    return value  # nested dataclasses are checked where they are built


def check(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def number(name: str, value: Any, kind: type = float) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{name} must be a number, got {value!r}")
    if kind is int and float(value) != int(value):
        raise UserError(f"{name} must be an integer, got {value!r}")
    return kind(value)


def choices(name: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    check(len(values) > 0, f"{name} is empty; choose from {', '.join(allowed)}")
    for value in values:
        check(value in allowed, f"unknown {name} value {value!r}; choose from {', '.join(allowed)}")
    check(len(set(values)) == len(values), f"{name} lists a value twice: {list(values)}")


def one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    check(value in allowed, f"unknown {name} {value!r}; choose from {', '.join(allowed)}")
