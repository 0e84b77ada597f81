"""What the server side of ``rsi serve`` (:mod:`rsi_plugin.serve.cpu_actor`) takes from ndif's
and nnsight's internals, named in one place, as :data:`rsi_plugin.access.nnsight_api.NNSIGHT_API`
does for the client.

:mod:`~rsi_plugin.serve.cpu_actor` subclasses ndif 0.1.2's model deployment and controller
actor and patches two classmethods of nnsight's ``Remotable``; an ndif or nnsight upgrade that
renames one of these names fails ``tests/serve/test_ndif_api.py`` (ndif's names are checked
inside the server venv, where ndif is installed, by reading its source: importing ndif's
deployment modules takes half a minute), not a deployment. This module imports nothing heavy,
so both interpreters can read it.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
from pathlib import Path

__all__ = ["NDIF_API", "SERVER_NNSIGHT_API", "KINDS", "missing", "missing_in_source"]

#: ``"class"``: an attribute of the class (method, class constant); ``"instance"``: an attribute
#: the class (or a base) sets on ``self``
KINDS: tuple[str, ...] = ("class", "instance")

_BASE = "ndif.services.ray.deployments.modeling.base"
_CONTROLLER = "ndif.services.ray.deployments.controller.controller"

#: ndif names cpu_actor relies on: ``(module, dotted name, kind)``
NDIF_API: tuple[tuple[str, str, str], ...] = (
    (_CONTROLLER, "_ControllerActor", "class"),
    (_BASE, "BaseModelDeployment", "class"),
    # the methods and constant CPUModelDeployment overrides (an override of a name ndif no
    # longer calls would silently do nothing)
    (_BASE, "BaseModelDeployment.load_from_disk", "class"),
    (_BASE, "BaseModelDeployment.to_cache", "class"),
    (_BASE, "BaseModelDeployment.from_cache", "class"),
    (_BASE, "BaseModelDeployment.cleanup", "class"),
    (_BASE, "BaseModelDeployment.CACHEABLE", "class"),
    # the state it reads and resets
    (_BASE, "BaseModelDeployment.model_key", "instance"),
    (_BASE, "BaseModelDeployment.dtype_name", "instance"),
    (_BASE, "BaseModelDeployment.kwargs", "instance"),
    (_BASE, "BaseModelDeployment.model", "instance"),
    (_BASE, "BaseModelDeployment.cached", "instance"),
    (_BASE, "BaseModelDeployment.kill_switch", "instance"),
    (_BASE, "BaseModelDeployment.kill_reason", "instance"),
    (_BASE, "BaseModelDeployment.execution_ident", "instance"),
)

#: nnsight names cpu_actor relies on (beyond the client's NNSIGHT_API): ``(module, dotted name, kind)``
SERVER_NNSIGHT_API: tuple[tuple[str, str, str], ...] = (
    ("nnsight.modeling.mixins.remotable", "Remotable.describe_checkpoint", "class"),
    ("nnsight.modeling.mixins.remotable", "Remotable.max_tp_size", "class"),
    ("nnsight.modeling.mixins.remotable", "Remotable.from_model_key", "class"),
    ("nnsight.intervention.envoy", "Envoy._module", "instance"),
    ("nnsight.intervention.envoy", "Envoy.interleaver", "instance"),
    ("nnsight.intervention.interleaver", "Interleaver.cancel", "class"),
)


def _sets_on_self(cls: type, name: str) -> bool:
    pattern = re.compile(rf"\bself\.{re.escape(name)}\s*(:[^=\n]*)?=(?!=)")
    for base in inspect.getmro(cls):
        try:
            if pattern.search(inspect.getsource(base)):
                return True
        except (OSError, TypeError):  # a builtin base has no source
            continue
    return False


def missing(table: tuple[tuple[str, str, str], ...]) -> list[str]:
    """The entries of ``table`` the installed packages lack, as ``"module:name"``.

    Imports each module of the table, so run it where those packages are installed.
    """
    absent = []
    for module, dotted, kind in table:
        value: object = importlib.import_module(module)
        parts = dotted.split(".")
        for part in parts[:-1] if kind == "instance" else parts:
            value = getattr(value, part, None)
            if value is None:
                break
        found = value is not None and (kind == "class" or (isinstance(value, type) and _sets_on_self(value, parts[-1])))
        if not found:
            absent.append(f"{module}:{dotted}")
    return absent


def _module_file(module: str) -> Path | None:
    """The source file of ``module``, found from its top package without importing it."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    base = Path(list(spec.submodule_search_locations)[0]).joinpath(*rest)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def missing_in_source(table: tuple[tuple[str, str, str], ...]) -> list[str]:
    """Like :func:`missing`, read from the modules' source instead of importing them: a class
    defined in the module, a ``"class"`` name defined in its body, an ``"instance"`` name
    assigned to ``self`` in it. (ndif's deployment modules take half a minute to import.)"""
    absent = []
    trees: dict[str, ast.Module | None] = {}
    for module, dotted, kind in table:
        if module not in trees:
            path = _module_file(module)
            trees[module] = ast.parse(path.read_text()) if path is not None else None
        tree = trees[module]
        cls_name, *attr = dotted.split(".")
        cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name), None) if tree else None
        found = cls is not None
        if found and attr and kind == "class":
            defined = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
            defined |= {t.id for n in cls.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
            defined |= {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
            found = attr[0] in defined
        elif found and attr:
            found = any(isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
                        and t.attr == attr[0]
                        for n in ast.walk(cls) if isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign))
                        for t in (n.targets if isinstance(n, ast.Assign) else [n.target]))
        if not found:
            absent.append(f"{module}:{dotted}")
    return absent
