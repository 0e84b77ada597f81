"""Lazy exports for a package ``__init__``: a name is imported from its module on first use.

Every ``__init__`` of this library exports its public API through :func:`lazy_exports`, so
``import rsi_plugin`` and ``import rsi_plugin.<subpackage>`` import no torch, nnsight or pandas
until a name is used.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(
    namespace: dict[str, Any],
    exports: Mapping[str, str],
    forward: Mapping[str, str] | None = None,
    submodules: Mapping[str, str] | None = None,
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

    Returns:
        ``(__getattr__, __dir__)`` for the package's namespace.
    """
    forward = dict(forward or {})
    submodules = dict(submodules or {})
    table = {**forward, **exports}
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        if name in submodules:
            return importlib.import_module(f"{package}.{submodules[name]}")
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        path = module if module.startswith("rsi_plugin") else f"{package}.{module}"
        value = getattr(importlib.import_module(path), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(exports) + [n for n in ("__version__",) if n in namespace]

    return __getattr__, __dir__
