r"""A self-contained HTML report of a run directory, built from its files alone (no model).

:func:`write_report` reads what :func:`rsi_plugin.outputs.contents.discover` finds below the
directory (``settings.json``, every scan folder, the Fig.-1 grids, every sweep folder) and
writes ``report.html`` beside them: inline CSS, no script, images referenced by paths
relative to the directory (every referenced file exists). Nothing is recomputed from a model;
tables missing from a folder are derived from the CSVs that are there (the per-block summary
from ``scan.csv``, Eq. 3 from ``ablation.csv``), and the summary bar chart is drawn when
``figures/summary.png`` is missing or older than its scan.

The page, top to bottom: at a glance (per block), settings, each scan (§3), the Fig.-1
grids, each ablation sweep (§4). The HTML helpers are in :mod:`rsi_plugin.outputs.html`.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rsi_plugin.core.runfolder import ABLATION_CELLS, EQ3_TABLE, REPORT, SCAN_TABLE, RunLayout, ScanFiles, SweepFiles
from rsi_plugin.core.frames import truthy
from rsi_plugin.outputs.contents import RunContents, ScanOutput, SweepOutput, block_key, discover
from rsi_plugin.outputs.html import (
    CSS,
    Page,
    escape,
    format_value,
    html_table,
    percent,
    scale_label,
    settings_table,
)
from rsi_plugin.errors import RSIError

__all__ = ["write_report", "REPORT_NAME"]

logger = logging.getLogger(__name__)

#: the report's file name in the run directory
REPORT_NAME = REPORT
#: at most this many rows of a scan table are written into the report (all are in scan.csv)
MAX_TABLE_ROWS = 5000
#: the columns of a scan's summary shown in "Passing channels per block" (all of them are one
#: click away, in a scrolling box): a table of some 40 columns cannot be read at page width
SUMMARY_COLUMNS = ("source", "transform", "block", "channels", "passing", "share", "seeds", "robust", "any_seed",
                   "undetermined", "jaccard_mean", "null_p", "control_p", "control_verdict")
#: at most this many In/Pre FZ pairs per block when no grid exists
MAX_FZ_PAIRS = 64


SCAN_CAPTION = ("A channel passes when Eq. 1 holds, ReLU(Pre_c(X̂_In)) < Pre_c(S(X̂_In)) (scaling up the In FZ "
                "raises Pre in the positive domain), and Eq. 2 holds, 2/3 < Post_c(X̂_In) / Post_c(X̂_Pre) < 3/2 "
                "(Post answers both summands' FZs about equally); X̂ are centre-neuron FZs, S crops the centre half "
                "and resizes back. The paper (ResNet18, ImageNet) found 6 channels in 1.1 (~9.4%), 2 in 2.0 (~1.5%), "
                "23 in 2.1 (~18%) and 46 in 3.1 (~18%).")
GRID_CAPTION = ("Columns: the channel at In, Pre and Post of the block. Rows: FZ of the channel's centre neuron, "
                "FZ of the whole channel, and the top natural images at the centre neuron (as in the paper's Fig. 1).")
EQ3_CAPTION = ("Left, Eq. 3 (the paper's Fig. 2, y-axis from 0): mean over random trials of acc(invariant channels "
               "ablated) / acc(random channels ablated) at each scale, with its value; whiskers: standard error over "
               "the trials (none where fewer than two were kept); blue line: the no-scale ratio. Bars below "
               "the line mean that ablating the scale-invariant channels costs more accuracy under scaling than "
               "without it, relative to random channels. Right, what the verdict tests: the invariant set's "
               "scale-specific deficit D(p) = ratio(p) − ratio(0) (red) against the same deficit of the null sets "
               "(random same-size sets from all channels: grey band from their 5th to 95th percentile, line at "
               "their median).")
ACC_CAPTION = ("Top-1 accuracy against the scale transformation (centre crop of p% of the resized image, resized "
               "back): no ablation (black), the scale-invariant channels mean-ablated (red), each random control set "
               "(grey) and their mean (blue).")


def _scan_label(scan: ScanOutput, root: Path) -> str:
    relative = scan.dir.relative_to(root).as_posix()
    return "." if relative in ("", ".") else relative


def _scan_settings(scan: ScanOutput) -> dict[str, Any]:
    table = scan.table
    info: dict[str, Any] = dict(scan.attrs)
    for column in ("source", "transform", "tolerance", "node_variant", "images_per_channel"):
        if column in table.columns:
            values = list(dict.fromkeys(table[column].dropna().tolist()))
            if values:
                info.setdefault(column, values[0] if len(values) == 1 else values)
    info["rows"] = len(table)
    info["blocks"] = list(dict.fromkeys(table["block"].astype(str)))
    return info


def _summary_chart(scan: ScanOutput, contents: RunContents, page: Page) -> Path | None:
    from rsi_plugin.outputs.plots import plot_summary

    run = RunLayout(contents.root)
    if len(contents.scans) == 1:
        path = run.summary_plot
    else:
        slug = re.sub(r"[^A-Za-z0-9.]+", "_", _scan_label(scan, contents.root)).strip("_") or "scan"
        path = run.figures / f"{run.summary_plot.stem}_{slug}{run.summary_plot.suffix}"
    source = ScanFiles(scan.dir).table
    stale = not path.is_file() or path.stat().st_mtime < source.stat().st_mtime
    if stale and not scan.summary.empty:
        try:
            plot_summary(scan.summary, path)
        except (OSError, ValueError) as error:
            logger.warning("could not draw %s: %s", path, error)
    return path if path.is_file() else None


def _scan_section(scan: ScanOutput, contents: RunContents, page: Page, many: bool) -> None:
    label = _scan_label(scan, contents.root)
    page.section(f"Scan: {label}" if many else "Scan (§3)")
    names = ScanFiles(scan.dir)
    files = [page.link(p, p.name) for p in (names.table, names.summary, names.comparison, names.parquet)
             if p.is_file()]
    page.add(f'<p class="meta">Folder <code>{escape(label)}</code>; files: {", ".join(files)}.</p>')
    page.add(settings_table(_scan_settings(scan)))

    page.section("Passing channels per block", level=3)
    derived = " (computed from scan.csv; summary.csv is missing)" if scan.summary_source == SCAN_TABLE else ""
    page.add(f'<p class="caption">Channels analysed and passing both criteria per block{escape(derived)}. '
             f"{escape(SCAN_CAPTION)}</p>")
    shown = [c for c in SUMMARY_COLUMNS if c in scan.summary.columns]
    page.add(html_table(scan.summary[shown] if shown else scan.summary, {"share": percent}))
    if shown and len(shown) < len(scan.summary.columns):
        page.add(f"<details><summary>All {len(scan.summary.columns)} columns of "
                 f"{escape(names.summary.name if scan.summary_source != SCAN_TABLE else 'the summary')}"
                 f" (seed agreement, null and untrained-control counts)</summary>"
                 f'<div class="scroll">{html_table(scan.summary, {"share": percent}, wrap=False)}</div></details>')
    chart = _summary_chart(scan, contents, page)
    if chart is not None:
        page.figure(chart, "Share of channels passing Eq. 1 and 2 per block; labels: passing / analysed.",
                    alt="bar chart of the passing share per block")

    if scan.comparison is not None:
        page.section("Agreement with the paper's channels", level=3)
        weights = scan.attrs.get("weights", contents.weights)
        page.add('<p class="caption">The channels this scan found against the paper\'s published passing channels '
                 "of ResNet18 IMAGENET1K_V1 (Fig. 1, 3, 4), among the channels scanned. "
                 f"This run's weights: {escape(weights or 'unknown')}. The paper notes results vary with the "
                 "stochastic feature visualisation: this measures agreement, not pass/fail.</p>")
        page.add(html_table(scan.comparison))

    table = scan.table.drop(columns=[c for c in scan.table.columns if c.endswith("_path")])
    shown = table.head(MAX_TABLE_ROWS)
    more = f" (first {MAX_TABLE_ROWS} of {len(table)} rows)" if len(table) > len(shown) else f" ({len(table)} rows)"
    per = "(source, block, channel, seed)" if "seed" in table.columns else "(source, block, channel)"
    page.add(f"<details><summary>Full scan table{escape(more)}: one row per {per}; "
             f"passing rows shaded. FZ paths are in {page.link(names.table)}.</summary>"
             f'<div class="scroll">'
             f'{html_table(shown, row_class=lambda r: "pass" if bool(r.get("passes", False)) else "")}</div></details>')


def _find_fz(value: Any, scan_dir: Path, root: Path) -> Path | None:
    """Where an FZ PNG named in scan.csv lies inside the run directory, or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    path = Path(value)
    candidates = [path] if path.is_absolute() else [scan_dir / path, root / path, Path.cwd() / path]
    if len(path.parts) >= 5:  # <fingerprint>/<block>/<node>/<hash>/cNNNNN.png under the scan's fz/
        candidates.append(ScanFiles(scan_dir).fz_cache / Path(*path.parts[-5:]))
    root = root.resolve()
    for candidate in candidates:
        try:
            if candidate.is_file() and candidate.resolve().is_relative_to(root):
                return candidate
        except OSError:
            continue
    return None


def _passing_counts(scans: Sequence[ScanOutput]) -> dict[str, int]:
    """Passing channels (FZ rows) per block, from the first scan holding each block.

    Counts channels, not rows: with several seeds a channel passes when it passes in every
    seed it was rendered in (robust, as :func:`rsi_plugin.criteria.seeds.channel_table`)."""
    counts: dict[str, int] = {}
    for scan in scans:
        rows = scan.table
        if "source" in rows.columns:
            rows = rows[rows["source"].astype(str) == "fz"]
        for block, part in rows.groupby(rows["block"].astype(str), sort=False):
            passes = truthy(part["passes"])
            if "channel" in part.columns:
                passes = passes.groupby(part["channel"].astype(int), sort=False).all()
            counts.setdefault(str(block), int(passes.sum()))
    return counts


def _grids_section(contents: RunContents, page: Page) -> None:
    page.section("Scale-invariant channels (Fig. 1)")
    if contents.grids:
        page.add(f'<p class="caption">{escape(GRID_CAPTION)}</p>')
        passing = _passing_counts(contents.scans)
        for block, grids in contents.grids.items():
            of = f" of {passing[block]} passing" if block in passing else ""
            page.section(f"Block {block}: {len(grids)}{of} channel(s)", level=3, toc=False)
            page.add('<div class="gallery">')
            for channel, path in grids:
                page.figure(path, f"block {block}, channel {channel}", css="grid")
            page.add("</div>")
        return
    pairs = 0
    for scan in contents.scans:
        if not {"in_fz_path", "pre_fz_path"} <= set(scan.table.columns):
            continue
        rows = scan.table[scan.table["passes"]]
        if "source" in rows.columns:
            rows = rows[rows["source"].astype(str) == "fz"]
        for block, part in rows.groupby(rows["block"].astype(str), sort=False):
            found = []
            for row in part.itertuples():
                a = _find_fz(row.in_fz_path, scan.dir, contents.root)
                b = _find_fz(row.pre_fz_path, scan.dir, contents.root)
                if a is not None and b is not None:
                    found.append((int(row.channel), getattr(row, "seed", None), a, b))
            if not found:
                continue
            if pairs == 0:
                page.add('<p class="caption">No Fig.-1 grid in this directory; shown instead: the In (left) and '
                         "Pre (right) centre-neuron FZs of each passing channel, as the scan rendered them.</p>")
            shown = found[:MAX_FZ_PAIRS]
            more = f" (first {len(shown)} of {len(found)})" if len(found) > len(shown) else ""
            channels = len({f[0] for f in found})
            seeded = "seed" in part.columns
            pairs_of = f", {len(found)} (channel, seed) pair(s)" if seeded and len(found) != channels else ""
            page.section(f"Block {block}: {channels} channel(s){pairs_of}{more}", level=3, toc=False)
            page.add('<div class="gallery">')
            for channel, seed, a, b in shown:
                ua, ub = page.rel(a), page.rel(b)
                label = f"channel {channel}, seed {int(seed)}" if seeded and not pd.isna(seed) else f"channel {channel}"
                page.add(f'<figure class="pair"><div class="pair-row"><img src="{escape(ua)}" alt="In FZ"><img '
                         f'src="{escape(ub)}" alt="Pre FZ"></div><figcaption>{label}: In | Pre</figcaption>'
                         "</figure>")
            page.add("</div>")
            pairs += len(shown)
    if pairs == 0:
        page.add('<p class="note">No Fig.-1 grid (figures/grid_&lt;block&gt;_&lt;channel&gt;.png) and no FZ image of a '
                 "passing channel in this directory.</p>")


def _accuracy_pivot(results: pd.DataFrame) -> pd.DataFrame:
    from rsi_plugin.ablation.eq3 import CONDITIONS

    frame = results.copy()
    frame["scale"] = frame["scale"].astype(float).round(6)
    pivot = frame.pivot_table(index=["condition", "trial"], columns="scale", values="accuracy", aggfunc="first")
    order = {name: i for i, name in enumerate(CONDITIONS)}
    pivot = pivot.sort_index(key=lambda s: s.map(lambda v: order.get(v, len(order))) if s.name == "condition" else s)
    pivot.columns = [scale_label(c) for c in pivot.columns]
    return pivot.reset_index()


def _sweep_section(sweep: SweepOutput, contents: RunContents, page: Page) -> None:
    label = sweep.dir.relative_to(contents.root).as_posix() or "."
    manifest = sweep.manifest
    block = manifest.get("block", "?")
    channels = manifest.get("channels") or []
    page.section(f"Ablation: block {block} ({label})")
    names = SweepFiles(sweep.dir)
    files = [page.link(p, p.name) for p in (names.manifest, names.cells, names.eq3, names.draws, names.means,
                                            names.skipped) if p.is_file()]
    page.add(f'<p class="meta">{len(channels)} scale-invariant channel(s) mean-ablated at '
             f"{escape(manifest.get('node', 'post'))}; folder <code>{escape(label)}</code>; files: {', '.join(files)}.</p>")
    page.add(settings_table(manifest))
    from rsi_plugin.outputs.summary import summarize_contents

    ablation = summarize_contents(RunContents(contents.root, {}, [], [sweep], {}))["ablations"][0]
    banner = _starved(ablation)
    if banner:
        page.add(f'<div class="banner">{escape(banner)}</div>')
    page.add(f'<p class="verdict">{escape(ablation["verdict"])}</p>')

    _eq3_chart(sweep, manifest)
    if not page.figure(names.eq3_plot, EQ3_CAPTION, css="figure plot", alt=f"Eq. 3 ratios per scale, block {block}"):
        page.add(f'<p class="note">{names.eq3_plot.name} is missing (the sweep may not have finished).</p>')
    if sweep.eq3 is not None:
        note = (" Computed from the finished cells of ablation.csv (eq3.csv is missing: the sweep may not have "
                "finished).") if sweep.eq3_source == ABLATION_CELLS else ""
        page.add(f'<p class="caption">Eq. 3 per scale: ratio_mean ± ratio_se over n_trials random sets, the '
                 "no-scale ratio and the accuracies of each condition; the tests (rsi_plugin.ablation.eq3_stats): a bootstrap "
                 "95% interval of the mean ratio (ratio_ci_low/high), the mean paired difference to the no-scale "
                 "ratio (diff_mean) with one-sided paired permutation (p_permutation) and sign (p_sign) tests over "
                 "the random sets, and the invariant set's scale-specific deficit (deficit) against n_null random "
                 "same-size sets from all channels (null_share: share doing at least as badly; p_null)."
                 f"{escape(note)}</p>")
        page.add(html_table(sweep.eq3, {"scale": scale_label}))
    page.figure(names.accuracy_plot, ACC_CAPTION, alt=f"accuracy against scale, block {block}")
    if sweep.results is not None and len(sweep.results):
        n = sorted({int(v) for v in sweep.results.get("n_images", pd.Series(dtype=int)).dropna()})
        images = f" over {', '.join(map(str, n))} images" if n else ""
        page.add(f'<p class="caption">Top-1 accuracy per condition and trial (rows) and scale (columns){escape(images)}.'
                 "</p>")
        shown = sweep.results[sweep.results["condition"].astype(str) != "null_set"]
        nulls = int(sweep.results.loc[sweep.results["condition"].astype(str) == "null_set", "trial"].nunique())
        page.add(html_table(_accuracy_pivot(shown)))
        if nulls:
            page.add(f'<p class="note">The {nulls} null sets\' cells are in '
                     f"{page.link(names.cells)} (condition null_set).</p>")
    if sweep.draws is not None:
        kept_mask = truthy(sweep.draws["kept"]) if "kept" in sweep.draws.columns else pd.Series(dtype=bool)
        kept = int(kept_mask.sum())
        tolerance, setting = ablation.get("tolerance"), ablation.get("tolerance_setting")
        if tolerance is None or isinstance(tolerance, str):  # no resolved value recorded (eq3.csv missing)
            used = f"the tolerance ({escape(format_value(setting))}; its resolved value is in eq3.csv once the sweep finishes)"
        else:
            used = escape(f"{float(tolerance):.4g}")
            if str(setting) == "auto":
                used += " (tolerance auto: the smallest that keeps the random sets asked)"
        page.add(f'<p class="caption">Screening of random control sets in the no-scale condition: {len(sweep.draws)} '
                 f"drawn, {kept} kept, {len(sweep.draws) - kept} rejected (kept when their accuracy is at most the "
                 f"invariant set's + {used}).</p>")
        page.add(f"<details><summary>Screened draws ({len(sweep.draws)})</summary>"
                 f'<div class="scroll">{html_table(sweep.draws, row_class=lambda r: "keep" if str(r.get("kept")) == "True" else "")}'
                 "</div></details>")
    if sweep.skipped is not None and len(sweep.skipped):
        page.add(f'<p class="note">{len(sweep.skipped)} data file(s) could not be read and were skipped '
                 f"({page.link(names.skipped)}).</p>")


def _eq3_chart(sweep: SweepOutput, manifest: Mapping[str, Any]) -> None:
    """Redraw the sweep's Eq. 3 chart from its tables with the null panel
    (:func:`rsi_plugin.outputs.plots.plot_eq3` given ``ablation.csv``), so that every report
    shows the null the verdict rests on, also for sweeps drawn before the chart had it. An
    unwritable folder keeps the chart there is (a warning). Only finished sweeps (``eq3.csv``)."""
    from rsi_plugin.outputs.plots import plot_eq3

    results = sweep.results
    if sweep.eq3_source != EQ3_TABLE or results is None or not (results["condition"].astype(str) == "null_set").any():
        return  # an unfinished sweep (no eq3.csv) draws its own chart when it finishes
    block, channels = manifest.get("block", "?"), len(manifest.get("channels") or [])
    kept = sweep.eq3["trials_kept"].iloc[0] if "trials_kept" in sweep.eq3.columns else None
    sets = "" if kept is None or manifest.get("trials") is None else f", {int(kept)} of {manifest['trials']} random sets"
    title = f"block {block}, {channels} channel{'' if channels == 1 else 's'}{sets}"
    try:
        plot_eq3(sweep.eq3, SweepFiles(sweep.dir).eq3_plot, title=title, results=results)
    except (OSError, ValueError, KeyError) as error:
        logger.warning("could not redraw the Eq. 3 chart of %s: %s", sweep.dir, error)


def _starved(ablation: Mapping[str, Any]) -> str | None:
    """The banner text of a sweep that kept fewer random sets than asked, or None."""
    kept, asked = ablation.get("trials_kept"), ablation.get("trials_asked")
    if kept is None or asked is None or kept >= asked:
        return None
    bars = " Fig. 2 has no error bars." if kept < 2 else ""
    return (f"Block {ablation['block']}: screening kept only {kept} of the {asked} random control sets asked "
            f"({ablation.get('draws')} draws, tolerance {format_value(ablation.get('tolerance'))}); Eq. 3 rests on "
            f"{kept} set(s).{bars} Rerun with --screen-tolerance auto (the smallest tolerance that keeps {asked}) or a "
            "larger --max-draws.")


def _glance_section(contents: RunContents, page: Page) -> None:
    """The first screen: per block, the passing channels, the seed agreement, the random
    sets kept and the Eq. 3 verdict with its test."""
    from rsi_plugin.outputs.summary import summarize_contents

    try:
        summary = summarize_contents(contents)
    except (KeyError, ValueError, TypeError) as error:  # a partial run must still get a report
        logger.warning("no overview: %s", error)
        return
    from rsi_plugin.outputs.method_card import row_label

    blocks = {row_label(b): b for b in summary["blocks"]}
    ablations = {row_label(a): a for a in summary["ablations"]}
    many = any("scan" in r for r in [*blocks.values(), *ablations.values()])
    if not blocks and not ablations:
        return
    page.section("At a glance")
    for ablation in ablations.values():
        text = _starved(ablation)
        if text:
            page.add(f'<div class="banner">{escape(text)}</div>')
    rows = []
    names = list(blocks) + [n for n in ablations if n not in blocks]
    if not many:
        names = sorted(names, key=block_key)
    for name in names:
        b, a = blocks.get(name, {}), ablations.get(name)
        jaccard = b.get("jaccard_mean")
        owner = b or a or {}
        row = {"scan": owner.get("scan", "–"), "model": owner.get("model", "–"),
               "block": owner.get("block", name), "channels": b.get("channels"),
               "robust": b.get("robust", b.get("passing")), "any seed": b.get("any_seed"),
               "undetermined": b.get("undetermined"),
               "seed Jaccard": "–" if jaccard is None else
               f"{jaccard:.2f} ({format_value(b.get('jaccard_min'))}–{format_value(b.get('jaccard_max'))})",
               "random sets kept": "–" if a is None else f"{a.get('trials_kept')} of {a.get('trials_asked')}",
               "Eq. 3 verdict": "not ablated" if a is None else a["verdict"]}
        rows.append(row)
    frame = pd.DataFrame(rows)
    seeded = any(b.get("robust") is not None for b in blocks.values())
    if not seeded:
        frame = frame.rename(columns={"robust": "passing"})
    frame = frame.drop(columns=[c for c in ("any seed", "undetermined") if frame[c].isna().all()])
    frame = frame.drop(columns=[c for c in ("scan", "model") if not many or (frame[c] == "–").all()])
    several = (" Every scan below the run directory has its own rows, named by its folder (scan) and model."
               if many else "")
    page.add('<p class="caption">Per block: channels passing both criteria (robust: in every seed, when the scan '
             "has seeds; any seed; undetermined: an In or Pre FZ was not valid), the agreement of the passing sets "
             "between seeds (Jaccard), the random control sets kept by the screening, and whether the Eq. 3 "
             "scale-specific deficit is distinguishable from a null of random same-size sets."
             f"{escape(several)}</p>")
    page.add(html_table(frame))


def _card_section(contents: RunContents, page: Page) -> None:
    """The first screen: the method card, per block one mark per check, and the rules."""
    from rsi_plugin.outputs.method_card import CHECKS, RULES, card_frame, card_reading, method_card
    from rsi_plugin.outputs.summary import summarize_contents

    try:
        card = method_card(summarize_contents(contents))
    except (KeyError, ValueError, TypeError) as error:  # a partial run must still get a report
        logger.warning("no method card: %s", error)
        return
    if not card:
        return
    page.section("Method card")
    page.add('<p class="caption">Can each finding be believed? Per block, one mark per check: the trained network '
             "against untrained copies of it, the instrument on a planted model with a known answer, the agreement "
             "of FZ seeds, Eq. 3 against a null with the deficit the run could have detected, and the verdicts "
             "under other analysis choices.</p>")
    frame = card_frame(card).reset_index()
    marks = {"pass": "mark-pass", "fail": "mark-fail", "inconclusive": "mark-inconclusive"}

    def cell(value: Any) -> str:
        mark, _, detail = str(value).partition(": ")
        return f'<span class="{marks.get(mark, "")}">{escape(mark)}</span> {escape(detail)}'

    rows = "".join("<tr>" + "".join(f"<td>{escape(r['block'])}</td>" if c == "block" else f"<td>{cell(r[c])}</td>"
                                     for c in frame.columns) + "</tr>" for r in frame.to_dict("records"))
    head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
    page.add(f'<div class="wide"><table class="card"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>')
    page.add(f'<p class="verdict">{escape(card_reading(card))}</p>')
    page.add("<ul class=\"rules\">" + "".join(f"<li><b>{escape(CHECKS[k])}</b>: {escape(RULES[k])}</li>" for k in CHECKS)
             + "</ul>")


def _render(contents: RunContents, title: str | None) -> str:
    from rsi_plugin import __version__

    page = Page(contents.root)
    model = contents.model
    from rsi_plugin.outputs.summary import run_warnings

    for text in run_warnings(contents.settings or {}):  # before any number: a smoke run is not a result
        page.add(f'<div class="banner">{escape(text)}</div>')
    _card_section(contents, page)
    _glance_section(contents, page)
    heading = title or (f"Scale invariance in the residual stream: {model}" if model
                        else f"Scale invariance in the residual stream: {contents.root.resolve().name}")
    if contents.settings:
        page.section("Settings")
        page.add('<p class="caption">What this run was (settings.json).</p>')
        page.add(settings_table(contents.settings))
    for scan in contents.scans:
        _scan_section(scan, contents, page, many=len(contents.scans) > 1)
    if contents.scans or contents.grids:
        _grids_section(contents, page)
    for sweep in contents.sweeps:
        _sweep_section(sweep, contents, page)

    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    found = (f"{len(contents.scans)} scan(s), {sum(len(g) for g in contents.grids.values())} Fig.-1 grid(s), "
             f"{len(contents.sweeps)} ablation sweep(s)")
    toc = "".join(f'<li><a href="#{name}">{escape(text)}</a></li>' for name, text in page.toc)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(heading)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{escape(heading)}</h1>\n"
        f'<p class="meta">Run directory <code>{escape(contents.root.resolve().name)}</code>: {escape(found)}. '
        f"Model {escape(model or 'unknown')}, weights {escape(contents.weights or 'unknown')}. "
        f"Generated {escape(stamp)} by rsi_plugin {escape(__version__)}, after arXiv 2504.16290.</p>\n"
        f"<nav><ol>{toc}</ol></nav>\n" + "\n".join(page.parts) + "\n</body>\n</html>\n"
    )


def write_report(run_dir: str | os.PathLike, title: str | None = None) -> Path:
    r"""Write ``run_dir/report.html`` from the scan and sweep outputs found below ``run_dir``.

    The report holds: ``settings.json`` as a table; for each scan its settings, the
    per-block count and share of passing channels (the paper's §3; from ``summary.csv``,
    or computed from ``scan.csv``), the summary bar chart (``figures/summary.png``, drawn
    when missing or older than the scan), the comparison with the paper's channels for
    resnet18 and the full scan table (collapsible); the Fig.-1 grids grouped by block (or,
    without grids, the In/Pre FZ pairs of the passing channels that exist); for each sweep
    its settings, the Eq. 3 plot and table, the accuracy-vs-scale plot and table and the
    screening counts. No model is loaded and nothing is recomputed from one; the file is
    written atomically. Images are referenced by paths relative to ``run_dir``, and only
    files that exist are referenced.

    Args:
        run_dir (str or path): a directory holding ``scan.csv`` and/or sweep folders
            (``sweep.json``) anywhere below it, e.g. the folder of ``rsi demo``, ``rsi scan
            --out`` or ``rsi ablate --out``.
        title (str, optional): the report's title; by default named after the model.

    Returns:
        Path of ``report.html``.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist.
        PathError: ``run_dir`` is a file, not a directory; or ``report.html`` could not be written (a full disk, a read-only folder); an
            existing report is kept whole and no partial file is left.
        ValueError: ``run_dir`` holds neither a ``scan.csv`` nor a ``sweep.json`` below it,
            or an unreadable ``settings.json``.
    """
    contents = discover(run_dir)
    if not contents.scans and not contents.sweeps:
        raise RSIError(f"{contents.root} holds no scan or ablation outputs: looked for scan.csv (from rsi scan; "
                         "columns block, channel, passes) and sweep.json (a sweep folder from rsi ablate) anywhere "
                         "below it")
    from rsi_plugin.outputs.summary import write_output

    text = _render(contents, title)
    path = RunLayout(contents.root).report
    write_output(path, text)
    logger.info("wrote %s (%s)", path, f"{len(contents.scans)} scan(s), {len(contents.sweeps)} sweep(s)")
    return path
