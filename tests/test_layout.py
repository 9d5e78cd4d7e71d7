"""The package's shape: imports point one way, down the data path, with no cycle anywhere.

Every import is counted, at module level, inside functions and under ``TYPE_CHECKING`` alike: a
cycle hidden from the interpreter is still a cycle for the reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: layer -> the layers it may import (besides itself); a layer is a top-level name under poller/.
#: Each step down the data path may import what the steps below it may, and those steps themselves.
_LEAVES = {"schemas", "poller.errors", "poller.secrets"}
_ENGINE = _LEAVES | {"poller.pipeline", "poller.transport", "poller.vendors"}
_WIRING = _ENGINE | {"poller.config", "poller.ops", "poller.push"}
ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "poller.errors": {"schemas"},
    "poller.secrets": set(),
    "poller.pipeline": _LEAVES,
    "poller.transport": {"poller.errors"},
    "poller.vendors": _LEAVES | {"poller.pipeline", "poller.transport"},
    "poller.config": _ENGINE,
    "poller.ops": _LEAVES | {"poller.pipeline", "poller.config"},
    "poller.simulators": _ENGINE - {"poller.secrets"},
    "poller.push": _ENGINE | {"poller.config", "poller.ops"},
    "poller.runtime": _WIRING,
    "poller.tools": _WIRING | {"poller.runtime", "poller.simulators"},
    "poller.cli": _WIRING | {"poller.runtime", "poller.simulators", "poller.tools"},
    "poller": set(),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for top in ("poller", "schemas"):
        for path in sorted((ROOT / top).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``name`` imports, resolved to the longest known module name."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(tree):
        candidates: list[str] = []
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for candidate in candidates:
            parts = candidate.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            if parts and parts[0] in ("poller", "schemas"):
                targets.add(".".join(parts))
                break
    targets.discard(name)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "schemas":
        return "schemas"
    return ".".join(parts[:2]) if len(parts) > 1 else "poller"


def test_every_layer_imports_only_downward() -> None:
    wrong = []
    for module, targets in _graph().items():
        layer = _layer(module)
        assert layer in ALLOWED, f"{module} is in no known layer: add it to ALLOWED"
        for target in targets:
            other = _layer(target)
            if other != layer and other not in ALLOWED[layer] and other != "poller":
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the data path:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle() -> None:
    graph = _graph()
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_walk_sees_function_level_and_type_checking_imports() -> None:
    """The checker itself: imports inside functions and TYPE_CHECKING blocks are edges too."""
    graph = _graph()
    # poller.cli imports the runtime lazily, inside its command functions
    assert "poller.runtime.service" in graph["poller.cli"]
    assert "poller.pipeline.state" in graph["poller.pipeline.differ"]


def _private_imports(name: str, path: Path, known: set[str]) -> list[str]:
    """Underscore names ``name`` takes from another project module: by ``from m import _x``, or
    as ``m._x`` on a module it imported. Dunders (``__version__``) are public."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: list[str] = []
    modules: dict[str, str] = {}  # local name -> project module it is bound to

    def private(attr: str) -> bool:
        return attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__"))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                # ``import a.b`` binds ``a``; ``import a.b as m`` binds ``m`` to ``a.b``
                bound = alias.name if alias.asname else alias.name.split(".")[0]
                if bound in known:
                    modules[alias.asname or bound] = bound
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base not in known or base == name:
                continue
            for alias in node.names:
                if private(alias.name):
                    found.append(f"{name} imports {alias.name} from {base}")
                elif f"{base}.{alias.name}" in known:
                    modules[alias.asname or alias.name] = f"{base}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            dotted: list[str] = []
            value: ast.expr = node
            while isinstance(value, ast.Attribute):
                value = value.value
                if isinstance(value, ast.Attribute):
                    dotted.append(value.attr)
            if isinstance(value, ast.Name) and value.id in modules:
                target = ".".join([modules[value.id], *reversed(dotted)])
                if target in known and target != name:
                    found.append(f"{name} uses {target}.{node.attr}")
    return found


def test_no_module_takes_a_private_name_from_another() -> None:
    """An underscore name is its module's own: another module that needs it gets a public one."""
    modules = _modules()
    known = set(modules)
    found = [line for name, path in modules.items() for line in _private_imports(name, path, known)]
    assert not found, "private names used across modules:\n" + "\n".join(sorted(found))


def test_the_private_name_check_sees_both_spellings(tmp_path: Path) -> None:
    """The checker itself: ``from m import _x``, a relative import and ``m._x`` are all caught."""
    source = tmp_path / "user.py"
    source.write_text(
        "import poller.config\n"
        "from poller.config import __version__, parse_config\n"
        "from ..config import _located\n"
        "from poller import config as cfg\n"
        "def f():\n"
        "    return poller.config._resolve_secret, cfg._ENV_NAME, parse_config\n"
    )
    known = {"poller", "poller.config", "poller.tools", "poller.tools.user"}
    found = _private_imports("poller.tools.user", source, known)
    assert sorted(found) == [
        "poller.tools.user imports _located from poller.config",
        "poller.tools.user uses poller.config._ENV_NAME",
        "poller.tools.user uses poller.config._resolve_secret",
    ]
