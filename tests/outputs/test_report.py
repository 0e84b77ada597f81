"""Fig.-1 grids (rsi_plugin.criteria.fig1_data computes, rsi_plugin.outputs.grids draws, rsi_plugin.apps.fig1
composes), the HTML report (rsi_plugin.outputs.report) and `rsi report`.

A run directory is built once from a real scan of a random-init tiny ResNet (2 blocks,
4 channels, 4 FZ steps) and a real ablation sweep (24 images, 2 scales, 2 trials). The
random model's criteria seldom pass, so the fixture marks channels 1 and 2 of each block
as passing: what is tested is what the grids and the report do with passing channels.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from rsi_plugin.featureviz import optimize as featureviz
from rsi_plugin.criteria import fig1_data as fig1_data
from rsi_plugin.outputs import grids as grid_drawing
from rsi_plugin.core import models as models
from rsi_plugin.criteria import natural as natural
from rsi_plugin.access import nnsight as trace
from rsi_plugin.cli import main
from rsi_plugin.featureviz.optimize import FeatureVizConfig
from rsi_plugin.apps.fig1 import channel_grids
from rsi_plugin.core.runfolder import RunLayout, grid_filename
from rsi_plugin.outputs.grids import GridLayout, save_channel_grids
from rsi_plugin.outputs.plots import plot_summary
from rsi_plugin.core.modelinfo import ModelInfo
from rsi_plugin.core.images import normalize
from rsi_plugin.outputs.contents import discover
from rsi_plugin.outputs.report import write_report
from rsi_plugin.ablation.experiment import SweepConfig, sweep
from rsi_plugin.outputs.plots import plot_sweep
from rsi_plugin.criteria.channel_scan import ScanConfig, scan, write_scan
from rsi_plugin.zoo import generate
from rsi_plugin.zoo.model import build_tiny_resnet

FAST = FeatureVizConfig(steps=4, channels_per_batch=8)
BLOCKS = ["1.1", "2.1"]
PASSING = [1, 2]
LAYOUT = GridLayout(cell=128)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    net = build_tiny_resnet().eval()
    net.rsi_info = ModelInfo(name="tiny", weights="random@0", input_size=64, resize_size=73, num_classes=10)
    return net


@pytest.fixture(scope="module")
def data(model) -> torch.Tensor:
    images, _ = generate(20, 5, size=64)
    return normalize(images, model)


@pytest.fixture(scope="module")
def run(model, tmp_path_factory) -> Path:
    """RUN/settings.json, RUN/scan/{scan.csv, scan.parquet, summary.csv, fz/}, RUN/ablation/2.1/ (a real sweep)."""
    root = tmp_path_factory.mktemp("run")
    table = scan(model, BLOCKS, ScanConfig(featureviz=FAST, channels=[0, 1, 2, 3], cache_dir=root / "scan" / "fz"),
                 progress=False)
    table["passes"] = table["channel"].isin(PASSING)
    table["verdict"] = table["passes"].map({True: "pass", False: "fail"})  # hand-set: no undetermined row
    write_scan(table, root / "scan")  # scan.csv, scan.parquet (with the table's attrs), summary.csv
    images, labels = generate(24, 3, size=73, centered=True)
    plot_sweep(sweep(model, (images, labels), "2.1", PASSING,
                     SweepConfig(scales=(0.0, 0.5), trials=2, tolerance=1.0, max_draws=4, null_sets=6, batch_size=12),
                     out_dir=root / "ablation" / "2.1", progress=False))  # eq3.png, accuracy.png, as rsi ablate
    settings = {"model": "tiny", "weights": "random@0", "blocks": BLOCKS, "steps": 4, "trials": 2,
                "wall_times": {"scan": 1.5, "ablation": 2.25}, "note": "<i>not markup</i>"}
    (root / "settings.json").write_text(json.dumps(settings))
    return root


def read_table(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "scan" / "scan.csv", dtype={"block": str})


class Spy:
    """Counts _optimize_stream calls (one per node and render call: its channels share a running
    batch) as (block, node, objective) and runs the real one."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def __call__(self, model, block, node, channels, cfg):
        self.calls.append((block.name, node, cfg.objective))
        return self.real(model, block, node, channels, cfg)


def fail(*args, **kwargs):
    raise AssertionError("this must not run")


class Links(HTMLParser):
    """Every src/href, every id, and every table (header cells and rows of cell texts)."""

    def __init__(self):
        super().__init__()
        self.targets, self.ids, self.tables = [], set(), []
        self._cell = self._row = None
        self._head = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.targets += [attrs[k] for k in ("src", "href") if k in attrs]
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "table":
            self.tables.append({"head": [], "rows": []})
        elif tag == "thead":
            self._head = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, text):
        if self._cell is not None:
            self._cell.append(text)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._head:
                self.tables[-1]["head"] = self._row
            else:
                self.tables[-1]["rows"].append(self._row)
            self._row = None
        elif tag == "thead":
            self._head = False


def parse(html_text: str) -> Links:
    links = Links()
    links.feed(html_text)
    return links


def table_with(links: Links, head_prefix: list[str]) -> dict:
    found = [t for t in links.tables if t["head"][:len(head_prefix)] == head_prefix]
    assert found, f"no table with columns {head_prefix}; tables: {[t['head'] for t in links.tables]}"
    return found[0]


def check_targets(root: Path, links: Links) -> None:
    assert links.targets
    for target in links.targets:
        if target.startswith("#"):
            assert target[1:] in links.ids, target
            continue
        assert "://" not in target and not target.startswith("/") and ".." not in target, target
        assert (root / unquote(target)).is_file(), target


# --------------------------------------------------------------------------- grids


def test_channel_grids_one_png_per_passing_channel_reuses_the_scan_cache_and_resumes(model, data, run, tmp_path,
                                                                                     monkeypatch):
    table = read_table(run)
    cache = tmp_path / "fz"
    shutil.copytree(run / "scan" / "fz", cache)  # the scan's In/Pre FZs only, whatever ran before
    spy = Spy(featureviz._optimize_stream)
    monkeypatch.setattr(featureviz, "_optimize_stream", spy)
    out = tmp_path / "figures"
    paths = channel_grids(model, table, out, FAST, cache, data, layout=LAYOUT, progress=False)
    assert paths == [out / grid_filename(b, c) for b in BLOCKS for c in PASSING]
    # In and Pre centre-neuron FZs came from the scan's cache: only Post (neuron) and the
    # three channel FZs were optimised, once per block (all channels in one batch)
    assert sorted(spy.calls) == sorted((b, n, o) for b in BLOCKS for n, o in
                                       [("post", "neuron"), ("in", "channel"), ("pre", "channel"), ("post", "channel")])

    # every FZ is in the cache now: where render() keeps each (no optimisation runs)
    monkeypatch.setattr(featureviz, "_optimize_stream", fail)
    results = {(b, o, n): featureviz.render(model, b, n, PASSING, replace(FAST, objective=o), cache, progress=False)
               for b in BLOCKS for o in ("neuron", "channel") for n in ("in", "pre", "post")}
    cached = {key: result.paths for key, result in results.items()}
    for path in paths:
        block, channel = path.stem.split("_")[1], int(path.stem.split("_")[2])
        picture = np.asarray(Image.open(path).convert("RGB"))
        assert (picture.shape[1], picture.shape[0]) == LAYOUT.size
        # rows 1 and 2: the cached FZ PNGs of In, Pre, Post, upscaled x2 (nearest); row 1's
        # In and Pre are the very files the scan wrote
        for r, objective in enumerate(("neuron", "channel")):
            for c, node in enumerate(("in", "pre", "post")):
                png = cached[(block, objective, node)][PASSING.index(channel)]
                left, top, right, bottom = LAYOUT.box(r, c)
                fz = np.asarray(Image.open(png).convert("RGB")).repeat(2, 0).repeat(2, 1)
                panel = picture[top:bottom, left:right]
                if results[(block, objective, node)].status[PASSING.index(channel)] != "ok":
                    # a non-ok FZ is outlined (3 px) and labelled in red at its top: the rest is the PNG
                    assert (panel[:, :3] == grid_drawing.STATUS_COLOR).all(), (r, c)
                    panel, fz = panel[24:-3, 3:-3], fz[24:-3, 3:-3]
                assert np.array_equal(panel, fz), (r, c)
        row = table[(table.block == block) & (table.channel == channel)].iloc[0]
        assert Path(row.in_fz_path).name == cached[(block, "neuron", "in")][PASSING.index(channel)].name
        for c in range(3):  # row 3: natural images, not blank
            left, top, right, bottom = LAYOUT.box(2, c)
            assert picture[top:bottom, left:right].std() > 10
        # the first tile of the natural In panel is the image with the highest centre-neuron
        # In activation, found here with a plain forward pre-hook
        seen = {}
        unit = dict(model.named_modules())[f"layer{block[0]}.{block[2]}"]
        handle = unit.register_forward_pre_hook(lambda m, args, seen=seen: seen.update(x=args[0].detach().clone()))
        try:
            with torch.no_grad():
                model(data)
        finally:
            handle.remove()
        act = seen["x"][:, channel, seen["x"].shape[2] // 2, seen["x"].shape[3] // 2]
        best = data[int(act.argmax())]
        shown = (best * torch.tensor(model.rsi_info.std).view(3, 1, 1) + torch.tensor(model.rsi_info.mean).view(3, 1, 1))
        array = (shown.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        per_row, side = LAYOUT.tiles(9)
        expected = np.asarray(Image.fromarray(array).resize((side, side), Image.Resampling.LANCZOS))
        left, top, _, _ = LAYOUT.box(2, 0)
        assert per_row == 3
        assert np.array_equal(picture[top:top + side, left:left + side], expected)

    # resume: every PNG exists, so nothing is computed and nothing rewritten
    stamps = [p.stat().st_mtime_ns for p in paths]
    monkeypatch.setattr(featureviz, "_optimize_stream", fail)
    monkeypatch.setattr(fig1_data, "render", fail)
    monkeypatch.setattr(fig1_data, "top_k_images", fail)
    assert channel_grids(model, table, out, FAST, cache, data, layout=LAYOUT, progress=False) == paths
    assert [p.stat().st_mtime_ns for p in paths] == stamps

    # a missing PNG is drawn again, from the FZ cache (no optimisation)
    monkeypatch.setattr(fig1_data, "render", featureviz.render)
    monkeypatch.setattr(fig1_data, "top_k_images", natural.top_k_images)
    before = np.asarray(Image.open(paths[1]).convert("RGB"))
    paths[1].unlink()
    assert channel_grids(model, table, out, FAST, cache, data, layout=LAYOUT, progress=False) == paths
    assert np.array_equal(np.asarray(Image.open(paths[1]).convert("RGB")), before)
    assert [p.stat().st_mtime_ns for i, p in enumerate(paths) if i != 1] == stamps[:1] + stamps[2:]
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_channel_grid_images_are_the_render_fzs_and_the_hooked_top_k(model, data, run, tmp_path):
    cache = tmp_path / "fz"
    shutil.copytree(run / "scan" / "fz", cache)
    grids = fig1_data.channel_grid_images(model, "2.1", PASSING, FAST, cache, data, top_k=3, progress=False)
    assert list(grids) == PASSING
    for objective in ("neuron", "channel"):  # the FZ rows: what render() gives (now from the cache)
        for node in ("in", "pre", "post"):
            result = featureviz.render(model, "2.1", node, PASSING, replace(FAST, objective=objective), cache,
                                       progress=False)
            for i, channel in enumerate(PASSING):
                torch.testing.assert_close(grids[channel][objective][node], result.images[i].float().cpu())
                assert grids[channel]["status"][objective][node] == result.status[i]
    # the natural In row: the 3 highest centre-neuron activations at the block's input, by a plain hook
    seen = {}
    handle = model.layer2[1].register_forward_pre_hook(lambda m, args: seen.update(x=args[0].detach().clone()))
    try:
        with torch.no_grad():
            model(data)
    finally:
        handle.remove()
    x = seen["x"]
    centre = x[:, :, x.shape[2] // 2, x.shape[3] // 2]
    for channel in PASSING:
        top = torch.topk(centre[:, channel], 3)
        torch.testing.assert_close(grids[channel]["activations"]["natural"]["in"], top.values)
        assert grids[channel]["natural"]["in"].shape == (3, 3, 64, 64)
        assert grids[channel]["sites"]["in"] == ("2.1", "in") and grids[channel]["block"] == "2.1"


def test_channel_grids_selection_and_errors(model, data, tmp_path, monkeypatch):
    table = pd.DataFrame({"source": ["fz", "fz", "natural", "fz"], "block": ["2.1", "2.1", "2.1", "3.1"],
                          "channel": [5, 3, 7, 0], "passes": [True, True, True, False]})
    assert fig1_data.passing_channels(table) == {"2.1": [3, 5]}  # natural rows and failing rows left out
    assert fig1_data.passing_channels(table, max_per_block=1) == {"2.1": [3]}
    assert fig1_data.passing_channels(table, blocks=["3.1"]) == {}
    with pytest.raises(ValueError, match="passes"):
        channel_grids(model, table.drop(columns="passes"), tmp_path, FAST, None, data)
    with pytest.raises(ValueError, match="9.9"):
        channel_grids(model, table, tmp_path, FAST, None, data, blocks=["9.9"])
    with pytest.raises(ValueError, match="top_k"):
        channel_grids(model, table, tmp_path, FAST, None, data, top_k=0)
    with pytest.raises(IndexError, match="0..31"):
        channel_grids(model, table.assign(channel=[99, 3, 7, 0]), tmp_path, FAST, None, data, progress=False)
    resnet = models.load_model("resnet18", weights=None, seed=0)
    with pytest.raises(ValueError, match="data="):
        fig1_data.channel_grid_images(resnet, "2.1", [0], FAST, None, None)
    with pytest.raises(ValueError, match="node_variant"):
        fig1_data.channel_grid_images(model, "2.1", [0], FAST, None, data, node_variant="paper")


def test_save_channel_grids_puts_each_panel_in_its_cell(tmp_path):
    colours = {"in": (1.0, 0.0, 0.0), "pre": (0.0, 1.0, 0.0), "post": (0.0, 0.0, 1.0)}

    def solid(rgb, n=None):
        image = torch.tensor(rgb).view(3, 1, 1).expand(3, 32, 32).clone()
        return image if n is None else torch.stack([image * (i + 1) / n for i in range(n)])

    grid = {"neuron": {k: solid(v) for k, v in colours.items()},
            "natural": {k: solid(v, 9) for k, v in colours.items()}}  # no channel row: drawn as n/a
    layout = GridLayout(cell=64)
    [path] = save_channel_grids({7: grid}, "2.1", tmp_path, layout)
    assert path == tmp_path / "grid_2.1_7.png"
    picture = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert (picture.shape[1], picture.shape[0]) == layout.size == (2 * 8 + 92 + 3 * 64 + 12, 2 * 8 + 24 + 20 + 3 * 64 + 12)
    # columns In, Pre, Post left to right after the row labels; rows below the title and header
    assert layout.box(0, 0) == (8 + 92, 8 + 24 + 20, 8 + 92 + 64, 8 + 24 + 20 + 64)
    assert layout.box(2, 1) == (8 + 92 + 70, 8 + 24 + 20 + 2 * 70, 8 + 92 + 70 + 64, 8 + 24 + 20 + 2 * 70 + 64)
    for c, role in enumerate(("in", "pre", "post")):
        left, top, right, bottom = layout.box(0, c)
        assert (picture[top:bottom, left:right] == np.array(colours[role]) * 255).all()
        left, top, right, bottom = layout.box(1, c)
        panel = picture[top + 1:bottom - 1, left + 1:right - 1]
        assert (panel > 200).mean() > 0.9  # the empty "n/a" panel: mostly white
        per_row, side = layout.tiles(9)
        left, top, _, _ = layout.box(2, c)
        for n in range(9):  # tile n has brightness (n + 1) / 9
            x = left + (n % per_row) * (side + layout.mosaic_gap)
            y = top + (n // per_row) * (side + layout.mosaic_gap)
            expected = np.round(np.array(colours[role]) * (n + 1) / 9 * 255)
            assert np.abs(picture[y:y + side, x:x + side] - expected).max() <= 1
    with pytest.raises(TypeError, match="dict"):
        save_channel_grids([grid], "2.1", tmp_path)
    with pytest.raises(ValueError, match="none of the rows"):
        save_channel_grids({1: {"sites": {}}}, "2.1", tmp_path)
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        save_channel_grids({1: {"neuron": {"in": torch.zeros(32, 32)}}}, "2.1", tmp_path)
    with pytest.raises(ValueError, match="cell"):
        GridLayout(cell=4)


def test_plot_summary_writes_a_chart_and_checks_its_input(tmp_path):
    summary = pd.DataFrame({"block": ["1.1", "2.1"], "channels": [64, 128], "passing": [6, 23]})
    path = plot_summary(summary, tmp_path / "figures" / "summary.png", title="passing share")
    assert path.is_file() and Image.open(path).size[0] > 100
    two = pd.concat([summary.assign(source="fz"), summary.assign(source="natural", passing=[1, 2])])
    assert plot_summary(two, tmp_path / "two.png").is_file()
    with pytest.raises(ValueError, match="passing"):
        plot_summary(summary.drop(columns="passing"), tmp_path / "x.png")
    with pytest.raises(ValueError, match="no rows"):
        plot_summary(summary.iloc[:0], tmp_path / "x.png")
    with pytest.raises(TypeError):
        plot_summary({"block": []}, tmp_path / "x.png")
    assert not list(tmp_path.rglob("*.tmp"))


# --------------------------------------------------------------------------- the report


@pytest.fixture()
def no_model(monkeypatch):
    """write_report must not load a model, render an FZ or trace anything."""
    for module, name in [(models, "load_model"), (featureviz, "_optimize_stream"), (featureviz, "render"),
                         (trace, "capture"), (trace, "ablate"), (fig1_data, "render"), (fig1_data, "top_k_images")]:
        monkeypatch.setattr(module, name, fail)


@pytest.fixture(scope="module")
def grids(model, data, run) -> list[Path]:
    """RUN/figures/grid_<block>_<channel>.png, as rsi demo draws them."""
    return channel_grids(model, read_table(run), run / "figures", FAST, run / "scan" / "fz", data, progress=False)


def test_write_report_from_the_directory_alone(run, grids, no_model):
    assert len(grids) == len(BLOCKS) * len(PASSING)
    title = "<b>tiny</b> & run"
    path = write_report(run, title=title)
    assert path == run / "report.html"
    text = path.read_text(encoding="utf-8")
    assert "&lt;b&gt;tiny&lt;/b&gt; &amp; run" in text and "<b>tiny</b>" not in text
    assert "<i>not markup</i>" not in text and "&lt;i&gt;not markup&lt;/i&gt;" in text
    assert "<script" not in text.lower() and "http://" not in text and "https://" not in text
    links = parse(text)
    check_targets(run, links)
    srcs = {unquote(t) for t in links.targets}
    # the summary chart was drawn from summary.csv, the sweep's figures are shown
    assert (run / "figures" / "summary.png").is_file() and "figures/summary.png" in srcs
    assert {"ablation/2.1/eq3.png", "ablation/2.1/accuracy.png"} <= srcs
    assert {g.relative_to(run).as_posix() for g in grids} <= srcs
    for block in BLOCKS:  # grids grouped by block, against the block's passing count in scan.csv
        assert f"Block {block}: {len(PASSING)} of {len(PASSING)} passing channel(s)" in text

    # settings.json: every key, nested ones flattened
    settings = json.loads((run / "settings.json").read_text())
    keys = {row[0] for t in links.tables for row in t["rows"] if len(row) == 2}
    assert {"model", "weights", "blocks", "steps", "trials", "wall_times.scan", "wall_times.ablation"} <= keys
    assert len(settings) == 7

    # the per-block summary equals counts made here from scan.csv
    table = read_table(run)
    summary = table_with(links, ["source", "transform", "block", "channels", "passing", "share"])
    got = {row[2]: (int(row[3]), int(row[4]), row[5]) for row in summary["rows"]}
    for block, part in table.groupby("block"):
        n, k = len(part), int(part["passes"].sum())
        assert got[block] == (n, k, f"{100 * k / n:.1f}%")

    # the full scan table: every row, passing rows marked, no path column
    full = table_with(links, ["source", "block", "channel", "pre_in"])
    assert len(full["rows"]) == len(table)
    assert not any(h.endswith("_path") for h in full["head"])
    assert text.count('<tr class="pass">') == int(table["passes"].sum())

    # Eq. 3 table: the columns of eq3.csv; accuracy table: condition/trial rows, a column per scale
    eq3 = pd.read_csv(run / "ablation" / "2.1" / "eq3.csv")
    eq3_html = table_with(links, list(eq3.columns))
    assert len(eq3_html["rows"]) == len(eq3)
    results = pd.read_csv(run / "ablation" / "2.1" / "ablation.csv")
    results = results[results["condition"] != "null_set"]  # the null sets' cells stay in ablation.csv
    accuracy = table_with(links, ["condition", "trial", "0%", "50%"])
    assert len(accuracy["head"]) == 4
    cells = {(r[0], int(r[1])): r[2:] for r in accuracy["rows"]}
    assert set(cells) == {(c, int(t)) for c, t in zip(results["condition"], results["trial"])}
    for r in results.itertuples():
        assert cells[(r.condition, int(r.trial))][0 if r.scale == 0 else 1] == f"{r.accuracy:.4g}"
    assert [k[0] for k in cells][:2] == ["none", "invariant"]
    draws = pd.read_csv(run / "ablation" / "2.1" / "draws.csv")
    kept = int(draws["kept"].sum())
    assert f"{len(draws)} drawn, {kept} kept, {len(draws) - kept} rejected" in text
    assert not list(run.glob("*.tmp")) and not list(run.glob(".report*"))


def test_every_file_a_run_writes_is_named_by_the_run_layout(run, grids, no_model):
    """scan + sweep + grids + report + summary write only files that RunLayout names, and
    discover() finds each of them where the layout says."""
    from rsi_plugin.outputs.summary import summarize_run, write_summary

    layout = RunLayout(run)
    assert write_report(run) == layout.report
    write_summary(summarize_run(run), layout.results_summary)
    sweep_files = layout.sweep("2.1")
    named = {layout.settings, layout.report, layout.results_summary, layout.summary_plot}
    for files in (layout.scan, sweep_files):
        named |= {getattr(files, name) for name, value in vars(type(files)).items()
                  if isinstance(value, property) and isinstance(getattr(files, name), Path)}
    named |= {layout.grid(b, c) for b in BLOCKS for c in PASSING}
    written = {p for p in run.rglob("*") if p.is_file() and layout.scan.fz_cache not in p.parents}
    assert written <= named, sorted(p.relative_to(run).as_posix() for p in written - named)
    # what the writers must have left: the scan's tables, the sweep's files, a grid per passing channel
    assert {layout.scan.table, layout.scan.channels, layout.scan.summary, sweep_files.manifest, sweep_files.cells,
            sweep_files.draws, sweep_files.means, sweep_files.eq3, sweep_files.eq3_plot,
            sweep_files.accuracy_plot} <= written
    assert not sweep_files.partial.exists()  # a finished sweep leaves no checkpoint
    contents = discover(run)
    assert [s.dir for s in contents.scans] == [layout.scan.dir]
    assert [s.dir for s in contents.sweeps] == [sweep_files.dir]
    assert contents.grids == {b: [(c, layout.grid(b, c)) for c in PASSING] for b in BLOCKS}
    assert contents.settings == json.loads(layout.settings.read_text())


def test_report_without_grids_or_summary_shows_fz_pairs_and_counts_from_scan_csv(run, tmp_path, no_model):
    # a copy of the scan folder alone: scan.csv names FZ PNGs by their old absolute paths,
    # and summary.csv is gone
    root = tmp_path / "moved"
    shutil.copytree(run / "scan", root)
    (root / "summary.csv").unlink()
    path = write_report(root)
    text = path.read_text(encoding="utf-8")
    links = parse(text)
    check_targets(root, links)
    table = read_table(run)
    pairs = table[table["passes"]]
    imgs = [unquote(t) for t in links.targets if t.startswith("fz/") and t.endswith(".png")]
    # each passing channel's In and Pre FZ, found under the moved folder (an <img> and no link)
    expected = {Path(p).relative_to(run / "scan").as_posix() for p in pairs["in_fz_path"].tolist() + pairs["pre_fz_path"].tolist()}
    assert set(imgs) == expected and len(imgs) == 2 * len(pairs)
    assert "computed from scan.csv" in text
    summary = table_with(links, ["source", "transform", "block", "channels", "passing", "share"])
    assert {r[2]: int(r[4]) for r in summary["rows"]} == {b: int(p["passes"].sum()) for b, p in table.groupby("block")}
    assert (root / "figures" / "summary.png").is_file()


def test_report_of_a_sweep_folder_alone_and_of_an_unfinished_one(run, tmp_path, no_model):
    folder = tmp_path / "sweep"
    shutil.copytree(run / "ablation" / "2.1", folder)
    for name in ("eq3.csv", "eq3.png"):
        (folder / name).unlink()
    text = write_report(folder).read_text(encoding="utf-8")
    links = parse(text)
    check_targets(folder, links)
    assert not any(i.startswith("scan") for i in links.ids) and "Fig. 1" not in text
    assert "eq3.png is missing" in text and "Computed from the finished cells of ablation.csv" in text
    eq3 = pd.read_csv(run / "ablation" / "2.1" / "eq3.csv")
    html_eq3 = table_with(links, ["scale", "ratio_mean", "ratio_se"])
    assert [r[1] for r in html_eq3["rows"]] == [f"{v:.4g}" if np.isfinite(v) else ("–" if np.isnan(v) else "∞")
                                                for v in eq3["ratio_mean"]]
    assert discover(folder).sweeps[0].manifest["block"] == "2.1"


def test_report_of_a_resnet18_scan_compares_with_the_paper(tmp_path, no_model):
    # 2.1 channels 15 and 21 are in the paper's Fig. 1; 0 and 1 are not passing there
    table = pd.DataFrame({"source": "fz", "block": "2.1", "channel": [0, 1, 15, 21],
                          "passes": [True, False, True, False]})
    (tmp_path / "scan").mkdir()
    table.to_csv(tmp_path / "scan" / "scan.csv", index=False)
    (tmp_path / "settings.json").write_text(json.dumps({"model": "resnet18", "weights": "IMAGENET1K_V1"}))
    links = parse(write_report(tmp_path).read_text(encoding="utf-8"))
    check_targets(tmp_path, links)
    comparison = table_with(links, ["source", "block", "probed", "scanned", "found", "paper", "overlap"])
    [row] = comparison["rows"]
    assert row[1:7] == ["2.1", "yes", "4", "2", "2", "1"]  # found {0, 15}, paper {15, 21}, overlap {15}
    assert row[7:] == ["0.5", "0.5", "0.3333", "1", "2", "0"]  # precision, recall, jaccard; seeds, any_seed, undetermined


def test_cli_report(run, tmp_path, capsys, no_model):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here")
    assert main(["report", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "scan.csv" in err and "sweep.json" in err and str(empty) in err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["report", str(run), "--title", "T"]) == 0
    printed = capsys.readouterr().out.strip()
    assert Path(printed) == run / "report.html" and "<title>T</title>" in Path(printed).read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="no scan or ablation outputs"):
        write_report(empty)
    assert not (empty / "report.html").exists()


def test_report_leads_with_the_method_card_and_reads_the_sensitivity_file(run, no_model, tmp_path):
    from rsi_plugin.outputs.html import escape
    from rsi_plugin.outputs.method_card import CHECKS, RULES, card_reading, method_card
    from rsi_plugin.outputs.summary import render_markdown, summarize_run

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    # a sensitivity summary as rsi sensitivity writes it: block 2.1 flips 3 of 4 verdicts under one choice
    pd.DataFrame([{"block": "2.1", "choice": "zoom_center", "rows": 4, "verdict_flips": 3, "eq1_flips": 3, "eq2_flips": 0},
                  {"block": "all", "choice": "zoom_center", "rows": 8, "verdict_flips": 3, "eq1_flips": 3, "eq2_flips": 0}]
                 ).to_csv(copy / "scan" / "sensitivity_summary.csv", index=False)
    summary = summarize_run(copy)
    blocks = {b["block"]: b for b in summary["blocks"]}
    assert blocks["2.1"]["sensitivity"] == {"zoom_center": {"rows": 4, "verdict_flips": 3, "eq1_flips": 3, "eq2_flips": 0}}
    text = write_report(copy).read_text(encoding="utf-8")
    sections = re.findall(r"<h2[^>]*>(.*?)</h2>", text)
    assert sections[0] == "Method card"
    card = table_with(parse(text), ["block"] + list(CHECKS.values()))
    rows = {row[0]: row for row in card["rows"]}
    assert set(rows) == set(blocks) | {a["block"] for a in summary["ablations"]}
    assert rows["2.1"][5].startswith("fail") and "zoom_center 3/4" in rows["2.1"][5]  # 75 % flips > 20 %
    assert all(rows[b][1].startswith("inconclusive") for b in rows)  # no untrained copy in this run
    for rule in RULES.values():
        assert text.count(escape(rule)) == 1
    assert escape(card_reading(method_card(summary))) in text
    markdown = render_markdown(summary)
    assert markdown.index("Method card") < markdown.index("| block |")


def test_report_of_a_multi_seed_scan_counts_channels_and_labels_seeds(tmp_path, no_model):
    # 6 channels x 3 seeds of block 2.1, scan.csv only: channel 9 passes in every seed
    # (robust), channel 3 in seed 0 only; a Fig.-1 grid of channel 9
    from PIL import Image

    root = tmp_path / "run"
    fz = root / "scan" / "fz"
    fz.mkdir(parents=True)
    rows = []
    for seed in (0, 1, 2):
        for channel in (0, 1, 2, 3, 4, 9):
            row = {"source": "fz", "transform": "none", "block": "2.1", "channel": channel, "seed": seed,
                   "passes": channel == 9 or (channel == 3 and seed == 0)}
            for node in ("in", "pre"):
                path = fz / f"{node}_{channel}_{seed}.png"
                Image.new("RGB", (4, 4)).save(path)
                row[f"{node}_fz_path"] = path.relative_to(root / "scan").as_posix()
            rows.append(row)
    pd.DataFrame(rows).to_csv(root / "scan" / "scan.csv", index=False)
    text = write_report(root).read_text(encoding="utf-8")
    links = parse(text)
    summary = table_with(links, ["source", "transform", "block", "channels", "passing"])
    heads = summary["head"]
    assert [(r[heads.index("channels")], r[heads.index("passing")]) for r in summary["rows"]] == [("6", "1")]
    assert "one row per (source, block, channel, seed)" in text
    # FZ pairs: 2 channels (9 and 3) in 4 (channel, seed) pairs, each labelled with its seed
    assert "Block 2.1: 2 channel(s), 4 (channel, seed) pair(s)" in text
    assert "channel 9, seed 1: In | Pre" in text and "channel 3, seed 0: In | Pre" in text
    # with the grid of channel 9: "1 of 1 passing channel(s)" (channel 3 is not robust)
    figures = root / "figures"
    figures.mkdir(exist_ok=True)
    Image.new("RGB", (4, 4)).save(figures / grid_filename("2.1", 9))
    text = write_report(root).read_text(encoding="utf-8")
    assert "Block 2.1: 1 of 1 passing channel(s)" in text
