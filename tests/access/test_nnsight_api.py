"""The nnsight API the library relies on, named in one place (:mod:`rsi_plugin.access.nnsight_api`).

An nnsight upgrade that renames or re-signs one of these fails here, loudly, rather than deep
inside a trace. And nothing else in the package reaches into nnsight's internals.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
import torch
from torch import nn

import rsi_plugin
from rsi_plugin.access import nnsight_api
from rsi_plugin.access.nnsight_api import NNSIGHT_API

PACKAGE = Path(rsi_plugin.__file__).parent
#: the server side of `rsi serve` plugs into NDIF's own actors (and nnsight's there), by design
SERVER_SIDE = ("serve",)


def _resolve(module: str, dotted: str):
    value = importlib.import_module(module)
    owner = None
    for part in dotted.split("."):
        owner, value = value, getattr(value, part, None) if part != "_module" else None
        if part == "_module":  # an instance attribute: check it on a wrapper of a tiny module
            envoy = nnsight_api.NNsight(nn.Linear(1, 1))
            value = getattr(envoy, "_module", None)
            assert isinstance(value, nn.Linear), "Envoy._module no longer holds the wrapped module"
    return value


@pytest.mark.parametrize("module, name, params", NNSIGHT_API, ids=[f"{m}:{n}" for m, n, _ in NNSIGHT_API])
def test_nnsight_has_what_the_library_relies_on(module, name, params):
    value = _resolve(module, name)
    assert value is not None, f"nnsight has no {module}.{name}; update rsi_plugin/access/nnsight_api.py"
    if params:
        function = value.__func__ if isinstance(value, classmethod) else value
        signature = inspect.signature(function)
        missing = [p for p in params if p not in signature.parameters]
        assert not missing, f"{module}.{name}{signature} lacks parameter(s) {missing}"


def test_the_wrapper_class_still_overrides_nnsight_hooks():
    """Each private hook RemotableEnvoy implements must still exist on nnsight's side (an
    override of a hook nnsight no longer calls would silently do nothing)."""
    from nnsight.modeling.mixins.remotable import Remotable

    for hook in ("_load", "_load_meta", "_remoteable_model_key", "_remoteable_from_model_key",
                 "_batch_size", "_batch"):
        assert hook in nnsight_api.RemotableEnvoy.__dict__
        assert any(hook in vars(base) for base in Remotable.__mro__ + nnsight_api.NNsight.__mro__), hook


def test_envoy_at_is_envoy_get_and_reads_a_live_value():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Sequential(nn.ReLU(), nn.Conv2d(2, 2, 1))).eval()
    envoy = nnsight_api.NNsight(model)
    assert nnsight_api.envoy_at(envoy, "") is envoy
    assert nnsight_api.unwrap(nnsight_api.envoy_at(envoy, "1.1")) is model[1][1]
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad(), envoy.trace(x):
        got = nnsight_api.save(nnsight_api.read_site(envoy, "1.1", "input").clone())
        assert nnsight_api.current_mediator() is not None
    assert nnsight_api.current_mediator() is None
    torch.testing.assert_close(got, torch.relu(model[0](x)))


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _package_files():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] not in SERVER_SIDE:
            yield relative, path


def test_only_nnsight_api_imports_from_inside_nnsight():
    """Other modules may ``import nnsight`` (its version), nothing from its submodules."""
    offenders = [(str(rel), name) for rel, path in _package_files() if rel != Path("access/nnsight_api.py")
                 for name in _imports(path) if name.startswith("nnsight.") or name == "nnsight" and
                 "from nnsight import" in path.read_text()]
    assert offenders == []


def test_no_module_spells_nnsight_internals():
    """``._module`` is read by :func:`~rsi_plugin.core.wrapped.unwrap` only, and nothing
    overrides nnsight's private ``_remote_backend``."""
    allowed = {Path("core/wrapped.py"), Path("access/nnsight_api.py")}
    offenders = []
    for rel, path in _package_files():
        text = path.read_text()
        if rel not in allowed and ('"_module"' in text or "._module" in text or "_remote_backend" in text):
            offenders.append(str(rel))
    assert offenders == [], "read the wrapped module with rsi_plugin.core.wrapped.unwrap"


def test_remote_does_not_import_the_readers_and_no_cycle_in_access():
    """``access`` modules import one way: nnsight_api <- remote <- nnsight (the readers),
    never the reverse, and no module-level import cycle among them."""
    graph = {}
    for path in sorted((PACKAGE / "access").glob("*.py")):
        graph[path.stem] = {name.rsplit(".", 1)[1] for name in _imports(path)
                            if name.startswith("rsi_plugin.access.")}
    assert "nnsight" not in graph["remote"] and "nnsight" not in graph["nnsight_api"]
    assert graph["nnsight_api"] <= set(), graph["nnsight_api"]

    def reaches(start: str, goal: str, seen: frozenset = frozenset()) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    cycles = [name for name in graph if reaches(name, name)]
    assert cycles == [], f"import cycle through {cycles}"
