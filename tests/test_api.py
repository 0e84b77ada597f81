"""The public API: the root's ~25 names, every name the root exported before still resolving to
the same object, and each subpackage exporting its API lazily without shadowing a submodule."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import types

import pytest

import rsi_plugin as rsi

SUBPACKAGES = ("core", "access", "featureviz", "criteria", "ablation", "outputs", "apps", "zoo")

#: every name ``rsi.<name>`` exported before the API was cut to ~25 names, and the module that
#: defined it then (the table of rsi_plugin/__init__.py at commit e838c31): user code written
#: against it must keep working, with the same objects
FORMER_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["load_model", "MODEL_NAMES", "RESNET_FAMILY"], "core.models"),
    **dict.fromkeys(["ResidualBlock", "NodeSite", "NODES", "residual_blocks", "get_block"], "core.blocks"),
    **dict.fromkeys(["capture", "ablate", "wrap", "node_gradient"], "access.nnsight"),
    **dict.fromkeys(["normalize", "denormalize", "ModelInfo", "model_info"], "core.images"),
    **dict.fromkeys(["S", "scale_crop", "get_transform"], "core.transforms"),
    "bench": "apps.bench",
    "ScaleInvariance": "criteria.captum",
    **dict.fromkeys(["invariance_criteria", "summarize", "node_sites"], "criteria.equations"),
    **dict.fromkeys(["scan", "ScanConfig"], "criteria.channel_scan"),
    **dict.fromkeys(["top_k_images", "TopKImages"], "criteria.natural"),
    "paper_channels": "paper",
    "compare_to_paper": "criteria.paper_comparison",  # rsi_plugin.paper before (a warning there now)
    **dict.fromkeys(["FeatureVizConfig", "FeatureVizResult", "visualize", "render", "paper_jitter",
                     "model_fingerprint"], "featureviz.optimize"),
    **dict.fromkeys(["block_nodes", "BlockNodes", "NestedTraceError"], "access.intrace"),
    **dict.fromkeys(["VisionModel", "remote_ready", "ModelKey"], "access.remote"),
    **dict.fromkeys(["BlockSpec", "attach_specs", "DEFAULT_SPECS"], "core.specs"),
    **dict.fromkeys(["hooked", "hook_name"], "access.lens"),
    **dict.fromkeys(["validation_loader", "SkippedFiles"], "core.data"),
    **dict.fromkeys(["channel_means", "ablate_conditions", "SweepConfig", "SweepResult", "sweep",
                     "eq3_summary", "scale_attacks"], "ablation"),
    "plot_eq3": "outputs.plots",  # exported by ablation before, which cannot name the layer above
    "channel_grids": "apps.fig1",
    "channel_grid_images": "criteria.fig1_data",
    **dict.fromkeys(["save_channel_grids", "GridLayout"], "outputs.grids"),
    "plot_summary": "outputs.plots",
    "write_report": "outputs.report",
    **dict.fromkeys(["DemoConfig", "run_demo"], "apps.demo"),
}


def _import_all_submodules() -> None:
    """Import every submodule first: the import system binds a submodule on its package, which
    is what would shadow an export of the same name."""
    for info in pkgutil.walk_packages(rsi.__path__, prefix="rsi_plugin."):
        if info.name.endswith("__main__") or info.name.startswith(("rsi_plugin.access.lens", "rsi_plugin.serve.cpu_actor")):
            continue  # __main__ runs the CLI; lens needs the optional transformer-lens extra (test_lens.py);
            # serve.cpu_actor runs only inside NDIF's server venv (ray, ndif; tests/integration)
        importlib.import_module(info.name)


def test_root_api_is_small_and_is_what_dir_lists():
    assert len(rsi.__all__) <= 26, sorted(rsi.__all__)
    assert sorted(dir(rsi)) == sorted(rsi.__all__)
    assert len(set(rsi.__all__)) == len(rsi.__all__)
    # the names a user of nnsight + Captum needs first
    for name in ("load_model", "capture", "ablate", "wrap", "block_nodes", "residual_blocks", "BlockSpec",
                 "ScaleInvariance", "scan", "ScanConfig", "render", "visualize", "FeatureVizConfig", "sweep",
                 "SweepConfig", "channel_means", "eq3_summary", "write_report", "normalize", "S", "RSIError"):
        assert name in rsi.__all__, name


def test_every_export_resolves_to_a_non_module():
    _import_all_submodules()
    for name in rsi.__all__:
        value = getattr(rsi, name)
        assert not isinstance(value, types.ModuleType), f"rsi.{name} is a module"
    assert callable(rsi.scan) and callable(rsi.bench) and callable(rsi.capture)


@pytest.mark.parametrize("name", sorted(FORMER_EXPORTS))
def test_former_root_names_resolve_to_the_same_object(name):
    module = importlib.import_module(f"rsi_plugin.{FORMER_EXPORTS[name]}")
    value = getattr(rsi, name)
    assert value is getattr(module, name)
    assert not isinstance(value, types.ModuleType)


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'scann'"):
        rsi.scann  # noqa: B018
    assert not hasattr(rsi, "does_not_exist")


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_subpackage_exports_resolve_and_never_shadow_a_submodule(package):
    _import_all_submodules()
    pkg = importlib.import_module(f"rsi_plugin.{package}")
    submodules = {info.name for info in pkgutil.iter_modules(pkg.__path__)}
    assert sorted(dir(pkg)) == sorted(pkg.__all__)
    clashes = sorted(set(pkg.__all__) & submodules)
    assert not clashes, f"rsi_plugin.{package} exports {clashes}, which are also its submodules"
    for name in pkg.__all__:
        value = getattr(pkg, name)
        assert not isinstance(value, types.ModuleType), f"rsi_plugin.{package}.{name} is a module"
    # the docstring's table of contents names every submodule
    missing = [m for m in submodules if f":mod:`.{m}`" not in (pkg.__doc__ or "")]
    assert not missing, f"rsi_plugin.{package}'s docstring table lacks {missing}"


def test_subpackages_import_light():
    code = ("import sys\n"
            f"for p in {SUBPACKAGES + ('errors', 'testing')!r}: __import__('rsi_plugin.' + p)\n"
            "print([m for m in ('torch', 'nnsight', 'pandas', 'captum', 'matplotlib') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_root_reaches_subpackages_and_shortcut_modules():
    assert rsi.criteria is importlib.import_module("rsi_plugin.criteria")
    assert rsi.lucent is importlib.import_module("rsi_plugin.featureviz.lucent")
    assert rsi.criteria.ScaleInvariance is rsi.ScaleInvariance
