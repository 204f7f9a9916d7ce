"""The house rules of the package: no module over 300 lines, no function over 60, no
import cycle between modules at import time, and only public names of the libraries the
study runs on."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "autoprune"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def test_no_module_is_over_300_lines_and_no_function_over_60():
    long = []
    for name, path in modules().items():
        source = path.read_text()
        if len(source.splitlines()) > 300:
            long.append(f"{name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long, long


def _imported_at_import_time(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules `name` imports at module level (parents of a submodule too: they
    run first). Imports inside functions and `if TYPE_CHECKING:` blocks are not followed."""
    def owner(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    targets: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets.update(f"{node.module}.{alias.name}" for alias in node.names)
    found = set()
    for target in targets:
        module = owner(target) if target.startswith("autoprune") else None
        while module:
            found.add(module)
            module = owner(module.rpartition(".")[0])
    # A package's own parents are imported before it; they are not its imports.
    return {m for m in found if m != name and not name.startswith(m + ".")}


def first_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (module -> modules it imports), or None."""
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> list[str] | None:
        if name in trail:
            return [*trail[trail.index(name):], name]
        if name in done:
            return None
        for dep in sorted(graph[name]):
            cycle = visit(dep, [*trail, name])
            if cycle:
                return cycle
        done.add(name)
        return None

    return next(filter(None, (visit(name, []) for name in sorted(graph))), None)


def test_no_import_cycle_at_import_time():
    paths = modules()
    graph = {name: _imported_at_import_time(name, path, set(paths))
             for name, path in paths.items()}
    assert first_cycle(graph) is None, " -> ".join(first_cycle(graph))


def test_the_cycle_check_finds_a_cycle_through_a_package(tmp_path):
    package = tmp_path / "autoprune"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("from autoprune.sub.b import thing\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("import os\n\ndef f():\n    import autoprune.a\n")
    (package / "sub" / "c.py").write_text("import autoprune.a\n")
    paths = {"autoprune.a": package / "a.py", "autoprune.sub": package / "sub" / "__init__.py",
             "autoprune.sub.b": package / "sub" / "b.py",
             "autoprune.sub.c": package / "sub" / "c.py"}
    graph = {n: _imported_at_import_time(n, p, set(paths)) for n, p in paths.items()}
    assert graph["autoprune.a"] == {"autoprune.sub", "autoprune.sub.b"}
    assert graph["autoprune.sub.b"] == set()  # imported inside a function: not followed
    assert first_cycle(graph) is None
    (package / "sub" / "__init__.py").write_text("from autoprune.sub import c\n")
    graph["autoprune.sub"] = _imported_at_import_time("autoprune.sub",
                                                      package / "sub" / "__init__.py",
                                                      set(paths))
    assert first_cycle(graph) == ["autoprune.a", "autoprune.sub", "autoprune.sub.c",
                                  "autoprune.a"]


LIBRARIES = ("optuna", "ray", "mlflow", "hydra", "torch_pruning")


def private_uses(source: str) -> list[str]:
    """Private names of LIBRARIES that `source` imports or reaches through an imported name:
    `from optuna._x import y`, `from optuna.z import _y`, `optuna.a._b`, `tune._c`."""
    def private(part: str) -> bool:
        return part.startswith("_") and not part.startswith("__")

    tree = ast.parse(source)
    bound: dict[str, str] = {}  # local name -> the library path it stands for
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in LIBRARIES:
                    if any(private(p) for p in alias.name.split(".")):
                        found.append(alias.name)
                    bound[(alias.asname or alias.name).split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in LIBRARIES:
                for alias in node.names:
                    path = f"{node.module}.{alias.name}"
                    if any(private(p) for p in path.split(".")):
                        found.append(path)
                    bound[alias.asname or alias.name] = path
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            parts = list(reversed(chain))
            if isinstance(inner, ast.Name) and inner.id in bound and any(map(private, parts)):
                first = next(i for i, p in enumerate(parts) if private(p))
                found.append(".".join([bound[inner.id], *parts[:first + 1]]))
    return sorted(set(found))


def test_no_private_name_of_optuna_ray_mlflow_hydra_or_torch_pruning_is_used():
    used = {name: private_uses(path.read_text()) for name, path in modules().items()}
    assert {name: names for name, names in used.items() if names} == {}


def test_the_private_name_check_sees_imports_and_attribute_chains():
    source = ("import optuna\nfrom ray import tune\nfrom mlflow.tracking import _x\n"
              "import numpy as np\n"
              "a = optuna.storages._CachedStorage\nb = tune.search._private.x\n"
              "c = optuna.samplers.TPESampler\nd = np._internal\ne = optuna.__version__\n")
    assert private_uses(source) == ["mlflow.tracking._x", "optuna.storages._CachedStorage",
                                    "ray.tune.search._private"]
