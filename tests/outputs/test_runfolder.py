"""The run-folder layout (rsi_plugin.core.runfolder) and the outputs package's boundaries.

The file names a run writes are spelled once, in rsi_plugin.core.runfolder; the tests here
check that the names and the grid pattern agree, that no other module spells a file name
again, and that rsi_plugin.outputs only draws (no feature-visualisation code, no model
access). That writers and readers meet through the layout is tested on a real run in
test_report.py::test_every_file_a_run_writes_is_named_by_the_run_layout.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import rsi_plugin
from rsi_plugin.core import runfolder
from rsi_plugin.core.runfolder import GRID_PATTERN, RunLayout, ScanFiles, SweepFiles, grid_filename

PACKAGE = Path(rsi_plugin.__file__).parent


def _file_names() -> dict[str, str]:
    """The module's file-name constants (names with a suffix, and the hidden .partial folder)."""
    return {k: v for k, v in vars(runfolder).items()
            if k.isupper() and isinstance(v, str) and ("." in v) and "*" not in v}


def test_layout_nests_scan_sweep_and_figure_folders_under_the_root(tmp_path):
    run = RunLayout(str(tmp_path))
    assert run.root == tmp_path  # a str root becomes a Path
    assert run.scan == ScanFiles(tmp_path / runfolder.SCAN_DIR)
    assert run.sweep("2.1") == SweepFiles(run.ablation / "2.1")
    assert run.summary_plot.parent == run.figures == run.grid("2.1", 3).parent
    assert run.scan.fz_cache.parent == run.scan.dir
    # every path property of the three classes is a distinct file or folder inside its folder
    for obj, folder in ((run, tmp_path), (run.scan, run.scan.dir), (run.sweep("3.10"), run.sweep("3.10").dir)):
        paths = [getattr(obj, name) for name, value in vars(type(obj)).items() if isinstance(value, property)]
        paths = [p for p in paths if isinstance(p, Path)]
        assert len(paths) == len(set(paths)) >= 6
        assert all(folder in p.parents for p in paths)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.root = tmp_path / "other"
    with pytest.raises(TypeError, match="str or path"):
        RunLayout(3)
    with pytest.raises(TypeError, match="str or path"):
        SweepFiles(None)
    assert ScanFiles(str(tmp_path)).dir == tmp_path


@pytest.mark.parametrize("block", ["1.0", "3.10", "layer4.1", "stages.2.blocks.0"])
@pytest.mark.parametrize("channel", [0, 15, 511])
def test_grid_file_names_round_trip_through_the_pattern(block, channel):
    name = grid_filename(block, channel)
    match = GRID_PATTERN.match(name)
    assert match is not None and match["block"] == block and int(match["channel"]) == channel
    assert Path(name).match(runfolder.GRID_GLOB)


def test_the_sweep_results_are_the_files_that_mark_a_used_folder(tmp_path):
    files = SweepFiles(tmp_path)
    assert set(files.results) == {files.cells, files.draws, files.means}
    assert files.manifest not in files.results  # a manifest alone is replaced (SweepStore.check_manifest)


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_no_module_but_the_layout_spells_a_run_file_name():
    names = set(_file_names().values())
    assert {"scan.csv", "sweep.json", "ablation.csv", "eq3.csv", "settings.json", "report.html",
            "results-summary.json", ".partial"} <= names
    found = []
    benchmarks = PACKAGE.parent / "benchmarks"
    for path in sorted([*PACKAGE.rglob("*.py"), *benchmarks.rglob("*.py")]):
        if path == Path(runfolder.__file__):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _docstrings(tree)
        for node in ast.walk(tree):  # a literal name, or one ending a path (f"{out}/scan.csv")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip \
                    and node.value.replace("\\", "/").rsplit("/", 1)[-1] in names:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value!r}")
    assert not found, "file names spelled outside rsi_plugin/core/runfolder.py:\n" + "\n".join(found)


def test_the_drawing_and_the_content_agree_on_the_grid_keys():
    from rsi_plugin.criteria import fig1_data
    from rsi_plugin.outputs import grids

    assert grids.ROWS == fig1_data.ROWS and grids.COLUMNS == fig1_data.COLUMNS
    assert set(grids.ROW_LABELS) == set(grids.ROWS) and set(grids.COLUMN_LABELS) == set(grids.COLUMNS)


def _imports(path: Path) -> set[str]:
    """Every rsi_plugin module a file imports, at any level (function bodies included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.split(".")[0] == "rsi_plugin"}


def test_outputs_draw_only():
    # outputs may read criteria/ablation tables; it never optimises FZs, touches a model or calls the apps
    banned = ("rsi_plugin.featureviz", "rsi_plugin.access", "rsi_plugin.apps", "rsi_plugin.cli", "rsi_plugin.zoo")
    offenders = {f"{path.name}: {m}" for path in (PACKAGE / "outputs").glob("*.py") for m in _imports(path)
                 if m.startswith(banned)}
    assert not offenders, offenders
    code = ("import json, sys\n"
            "import rsi_plugin.outputs.grids, rsi_plugin.outputs.plots, rsi_plugin.outputs.html\n"
            "import rsi_plugin.outputs.contents, rsi_plugin.outputs.report\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('rsi_plugin.featureviz', "
            "'rsi_plugin.access', 'rsi_plugin.ablation')) or m in ('nnsight', 'matplotlib', 'PIL'))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                       cwd=PACKAGE.parent).stdout)
    assert loaded == []  # matplotlib, Pillow and the Eq. 3 code load when a figure is drawn
