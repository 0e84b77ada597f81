"""The public API: every export resolves, and a function export is never shadowed by a
submodule of the same package."""

from __future__ import annotations

import importlib
import pkgutil
import types

import rsi_plugin as rsi


def test_every_export_resolves_to_a_non_module():
    # import every submodule first: the import system binds submodules on the package
    for info in pkgutil.walk_packages(rsi.__path__, prefix="rsi_plugin."):
        if info.name.endswith("__main__") or info.name.startswith(("rsi_plugin.access.lens", "rsi_plugin.serve.cpu_actor")):
            continue  # __main__ runs the CLI; lens needs the optional transformer-lens extra (test_lens.py);
            # serve.cpu_actor runs only inside NDIF's server venv (ray, ndif; tests/integration)
        importlib.import_module(info.name)
    for name in rsi.__all__:
        value = getattr(rsi, name)
        assert not isinstance(value, types.ModuleType), f"rsi.{name} is a module"
    assert callable(rsi.scan) and callable(rsi.bench) and callable(rsi.capture)
