"""Lazy exports for a package ``__init__``: a name is imported from its module on first use.

Every ``__init__`` of this library exports its public API through :func:`lazy_exports`, so
``import rsi_plugin`` and ``import rsi_plugin.<subpackage>`` import no torch, nnsight or pandas
until a name is used.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable, Mapping


def lazy_exports(
    namespace: dict[str, Any],
    exports: Mapping[str, str],
    forward: Mapping[str, str] | None = None,
    submodules: Mapping[str, str] | None = None,
    deprecated: Mapping[str, str] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    r"""A module ``__getattr__`` and ``__dir__`` that import names on first use.

    Args:
        namespace (dict): the package's ``globals()``; a name is cached there once loaded.
        exports (mapping): public name -> module that defines it, relative to the package
            (``"optimize"``, ``"core.models"``) or absolute (``"rsi_plugin.core"``); these
            are what ``dir()`` lists.
        forward (mapping, optional): further names that stay importable (``package.name``)
            without being listed: name -> module or subpackage that provides it.
        submodules (mapping, optional): attribute -> submodule path, for modules reachable
            as attributes (``rsi.lucent``) without an import.
        deprecated (mapping, optional): names this package exported before and no longer
            lists: name -> module that provides it now. They still resolve, to the same
            object, with a ``DeprecationWarning`` naming that module, on every use (as
            nnsight's ``deprecated()`` does).

    Returns:
        ``(__getattr__, __dir__)`` for the package's namespace.
    """
    forward = dict(forward or {})
    submodules = dict(submodules or {})
    deprecated = dict(deprecated or {})
    table = {**deprecated, **forward, **exports}
    package = namespace["__name__"]

    def _path(module: str) -> str:
        return module if module.startswith("rsi_plugin") else f"{package}.{module}"

    def __getattr__(name: str) -> Any:
        if name in submodules:
            return importlib.import_module(f"{package}.{submodules[name]}")
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(_path(module)), name)
        if name in deprecated and name not in forward and name not in exports:
            # not cached: every use warns
            warnings.warn(deprecation_message(f"{package}.{name}", _path(module), name), DeprecationWarning,
                          stacklevel=2)
            return value
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(exports) + [n for n in ("__version__",) if n in namespace]

    return __getattr__, __dir__


def deprecation_message(old: str, home: str, name: str) -> str:
    """The one wording of a moved name's ``DeprecationWarning``: where to import it from now."""
    return f"{old} is deprecated: import {name} from {home} ({home}.{name})"
