"""Imports point one way: core <- access <- featureviz <- criteria <- ablation <- outputs <- apps
<- cli (CONTRIBUTING.md, "Map of the package"). Every ``rsi_plugin`` import of every module is
read with ``ast``, function-level (lazy) ones included, and so is every string export a package
``__init__`` hands to :func:`rsi_plugin._lazy.lazy_exports` (``"rsi_plugin.outputs.plots"`` is an
import that happens on first use); a module may import its own layer and the layers below it,
never one above. The few exceptions are listed with their reason, and an
exception that is no longer needed fails too, so the list stays true."""

from __future__ import annotations

import ast
from pathlib import Path

import rsi_plugin as rsi

PACKAGE = Path(rsi.__file__).parent

#: the layers, lowest first. ``base`` is the package's own small modules (errors, lazy
#: exports, the paper's constants); ``zoo`` imports core only; ``serve`` (the NDIF server the
#: CLI starts) sits with the apps; ``testing`` (test helpers, references) may import anything
#: and nothing in the library imports it.
LAYERS: tuple[str, ...] = ("base", "core", "zoo", "access", "featureviz", "criteria", "ablation", "outputs",
                           "apps", "cli", "testing")
BASE_MODULES = ("errors", "_lazy", "paper")

#: (importing module, imported module) -> why the upward import is right for now. Every one is
#: a function-level (lazy) import.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in BASE_MODULES:
        return "base"
    return "apps" if parts[1] == "serve" else parts[1]


def _root_name(name: str) -> str:
    """What ``from rsi_plugin import <name>`` imports: a subpackage, a module, or an API name
    resolved through the root's tables."""
    if name == "__version__":
        return "rsi_plugin"
    if (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").exists():
        return f"rsi_plugin.{name}"
    table = {**rsi._FORMER, **rsi._EXPORTS}
    assert name in table, f"'from rsi_plugin import {name}': not a name of the root API"
    return f"rsi_plugin.{table[name]}"


def lazy_string_exports(path: Path) -> set[str]:
    """The modules a package ``__init__`` names as strings in its :func:`lazy_exports` tables
    (``exports``, ``forward``, ``deprecated``, ``submodules``): each is imported when its name is
    first used."""
    if path.name != "__init__.py":
        return set()
    package = module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    tables: dict[str, ast.expr] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
        if isinstance(target, ast.Name) and isinstance(getattr(node, "value", None), (ast.Dict, ast.DictComp)):
            tables[target.id] = node.value
    found: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")).endswith("lazy_exports")):
            continue
        for arg in node.args[1:] + [k.value for k in node.keywords]:
            table = tables.get(arg.id) if isinstance(arg, ast.Name) else arg
            assert table is not None, f"{path}: lazy_exports is given {ast.dump(arg)}, not a dict literal of this file"
            values = table.values if isinstance(table, ast.Dict) else [table.value]
            for value in values:
                assert isinstance(value, ast.Constant) and isinstance(value.value, str), \
                    f"{path}: a lazy export names its module as {ast.dump(value)}, not a string"
                name = value.value
                found.add(name if name.split(".")[0] == "rsi_plugin" else f"{package}.{name}")
    return found


def imports(path: Path) -> set[str]:
    """Every ``rsi_plugin`` module ``path`` imports, at any depth of the file, and every module
    its lazy exports name."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: set[str] = set(lazy_string_exports(path)) if me != "rsi_plugin" else set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "rsi_plugin"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "rsi_plugin":
                found |= {_root_name(a.name) for a in node.names}
            elif target.split(".")[0] == "rsi_plugin":
                found.add(target)
    return found


def upward_imports() -> dict[tuple[str, str], str]:
    """``(module, imported) -> "layer -> layer"`` for every import of a higher layer."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        me = module_name(path)
        if me == "rsi_plugin":
            continue  # the root's lazy table of the public API
        for target in imports(path):
            if rank[layer(target)] > rank[layer(me)]:
                found[(me, target)] = f"{layer(me)} -> {layer(target)}"
    return found


def test_the_layer_rule_reads_imports_correctly():
    # the reader itself, on known imports: absolute, relative, function-level, via the root
    assert layer("rsi_plugin.criteria.captum") == "criteria" and layer("rsi_plugin.errors") == "base"
    assert layer("rsi_plugin.serve.stack") == "apps" and layer("rsi_plugin") == "base"
    captum = imports(PACKAGE / "criteria" / "captum.py")
    assert {"rsi_plugin.access.nnsight", "rsi_plugin.criteria.equations", "rsi_plugin.core.blocks"} <= captum
    assert "rsi_plugin.errors" in imports(PACKAGE / "core" / "atomic.py")  # a function-level import
    # string exports of a lazy __init__: relative ("optimize") and absolute ("rsi_plugin.core")
    assert "rsi_plugin.featureviz.optimize" in imports(PACKAGE / "featureviz" / "__init__.py")
    assert "rsi_plugin.core" in lazy_string_exports(PACKAGE / "ablation" / "__init__.py")
    assert _root_name("capture") == "rsi_plugin.access" and _root_name("bench") == "rsi_plugin.apps.bench"
    assert _root_name("serve") == "rsi_plugin.serve" and _root_name("__version__") == "rsi_plugin"


def test_imports_point_down_the_layers():
    found = upward_imports()
    unexpected = {k: v for k, v in found.items() if k not in ALLOWED_UPWARD}
    assert not unexpected, "imports of a higher layer (move the code to the layer it needs, or import " \
                           f"the other way): {unexpected}"
    stale = sorted(set(ALLOWED_UPWARD) - set(found))
    assert not stale, f"these listed exceptions no longer happen; remove them from ALLOWED_UPWARD: {stale}"


def test_allowed_exceptions_are_lazy_imports():
    for (module, target), _reason in ALLOWED_UPWARD.items():
        path = PACKAGE.joinpath(*module.split(".")[1:])
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        top_level = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module:
                top_level.add(node.module)
            elif isinstance(node, ast.Import):
                top_level |= {a.name for a in node.names}
        assert target not in top_level, f"{module} imports {target} at module level; it must stay lazy"


def test_nothing_in_the_library_imports_testing():
    users = sorted(module_name(p) for p in PACKAGE.rglob("*.py")
                   if layer(module_name(p)) != "testing"
                   and any(layer(t) == "testing" for t in imports(p)))
    assert not users, f"library modules import rsi_plugin.testing: {users}"


def test_no_import_cycle_at_module_level():
    """Module-level imports form no cycle (a cycle makes import order matter)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        me = module_name(path)
        package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
        edges = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("rsi_plugin.")):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    edges.add(".".join(base + ([node.module] if node.module else [])))
                else:
                    edges.add(node.module)
        graph[me] = {e for e in edges if e != me}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(trail[trail.index(nxt):] + [nxt])}")
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
