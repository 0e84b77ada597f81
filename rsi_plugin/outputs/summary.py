r"""A run's headline numbers as one JSON file, their Markdown tables, and the README block
that must agree with them.

:func:`summarize_run` reads what ``rsi scan`` / ``rsi ablate`` / ``rsi demo`` wrote below a run
directory (no model) and returns a plain dict: per scanned block the passing channels (robust
/ any seed / undetermined and the seed Jaccard when the scan has seeds), and per ablated block
the random sets asked and kept, the screening tolerance, Eq. 3 per scale with its standard
error and tests (:mod:`rsi_plugin.ablation.eq3_stats`) and the one-sentence verdict.
:func:`write_summary` stores it (the file a demo run commits, e.g.
``docs/results/demo-summary.json``); :func:`render_markdown` turns it into the tables of the
README's "What the demo finds" section; :func:`update_readme` rewrites the README between
:data:`START` and :data:`END`, and :func:`check_readme` says where the README and the file
disagree (a test runs it, so hand-edited numbers fail).

``rsi report DIR --markdown`` prints the Markdown, ``--summary-json PATH`` writes the file and
``--update-readme README.md`` rewrites the README from that file.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from rsi_plugin.core.atomic import atomic_write_text
from rsi_plugin.errors import MissingFileError, PathError, RSIError

__all__ = ["START", "END", "marker_lines", "replace_readme_block", "summarize_run", "sensitivity_by_block", "summarize_contents", "write_summary", "read_summary", "render_markdown", "readme_block",
           "update_readme", "check_readme", "FORMAT"]

START = "<!-- results:start -->"
"""Marker comment opening the generated block of the README."""
END = "<!-- results:end -->"
"""Marker comment closing it."""
FORMAT = 1
"""Version of the summary file's layout."""

_BLOCK_COLUMNS = ("channels", "passing", "robust", "any_seed", "undetermined", "seeds", "jaccard_mean",
                  "jaccard_min", "jaccard_max", "null_expected")
_SCALE_COLUMNS = ("ratio_mean", "ratio_se", "n_trials", "no_scale_ratio", "ratio_ci_low", "ratio_ci_high",
                  "diff_mean", "p_permutation", "p_sign", "deficit", "n_null", "null_share", "p_null", "n_images",
                  "distinct_random", "distinct_null", "possible_null", "exact_null", "exact_permutation",
                  "alpha_scale", "min_p_null", "detectable", "detectable_deficit", "detectable_effect")
_SETTING_KEYS = ("model", "weights", "blocks", "steps", "seeds", "trials", "tolerance", "samples", "scales", "seed", "quick",
                 "null_sets", "max_draws", "channel_set", "ablation_blocks_chosen", "variant", "threads", "smoke",
                 "smoke_note", "smoke_channels", "step_cap_warning")


def run_warnings(settings: dict[str, Any]) -> list[str]:
    """What a reader must see before any number of a run: a smoke run (``rsi demo --quick``:
    not a result) and a step cap below the plateau the model's FZs need.

    Args:
        settings (dict): the run's ``settings.json`` (or a summary's ``settings``).

    Returns:
        list of str, empty for an ordinary run.
    """
    out = []
    if settings.get("smoke"):
        note = settings.get("smoke_note") or "a smoke run of every stage"
        forced = settings.get("smoke_channels")
        picked = ""
        if isinstance(forced, dict) and any(v for v in forced.values()):
            picked = " Forced channels (not passing ones) were ablated and drawn: " + "; ".join(
                f"{b}: {', '.join(str(c) for c in v)}" for b, v in forced.items() if v) + "."
        out.append(f"SMOKE RUN, NOT A RESULT: {note}.{picked}".replace("..", "."))
    if settings.get("step_cap_warning"):
        out.append(f"STEP CAP BELOW THE PLATEAU: {settings['step_cap_warning']}")
    return out


def _clean(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, floats to 6 significant digits, NaN/inf to None."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    return str(value)


def sensitivity_by_block(summary: pd.DataFrame) -> dict[str, dict[str, dict[str, int]]]:
    r"""A sensitivity summary as the method card reads it: block -> analysis choice ->
    ``{"rows", "verdict_flips", "eq1_flips", "eq2_flips"}``, the ``"all"`` rows left out.

    Args:
        summary (DataFrame): :func:`rsi_plugin.criteria.sensitivity.sensitivity_summary`, or
            ``sensitivity_summary.csv`` read back.

    Returns:
        dict.
    """
    out: dict[str, dict[str, dict[str, int]]] = {}
    for row in summary.to_dict("records"):
        if str(row["block"]) == "all":
            continue
        out.setdefault(str(row["block"]), {})[str(row["choice"])] = {
            k: int(row[k]) for k in ("rows", "verdict_flips", "eq1_flips", "eq2_flips") if k in row}
    return out


def _sensitivity(scan_dir: Path) -> dict[str, dict[str, dict[str, int]]]:
    """:func:`sensitivity_by_block` of the scan's ``sensitivity_summary.csv``, or ``{}`` without one
    (read here rather than through criteria.sensitivity, which imports torch: rsi report stays light)."""
    from rsi_plugin.core.runfolder import ScanFiles

    path = ScanFiles(scan_dir).sensitivity_summary
    return sensitivity_by_block(pd.read_csv(path, dtype={"block": str})) if path.is_file() else {}


def _controls(record: dict[str, Any], row: dict[str, Any]) -> dict[str, Any] | None:
    """The untrained-copy comparison of a ``summary.csv`` row (its ``control_*`` columns,
    :func:`rsi_plugin.criteria.controls.compare_to_controls`), or None when the scan had none."""
    names = record.get("control_names")
    if not isinstance(names, str) or not names.strip():
        return None
    counts = [int(c) for c in str(record.get("control_counts", "")).split()]
    # the trained count as the comparison made it (on the seeds the copies were rendered with);
    # tables written before control_seeds existed compared every seed: the robust count
    trained = record.get("control_trained", record.get("robust", record.get("passing")))
    return {"names": names.split(), "counts": counts, "trained": None if trained is None else int(trained),
            "mean": record.get("control_mean"), "max": record.get("control_max"),
            "passing": record.get("control_passing"), "determined": record.get("control_determined"),
            "p": record.get("control_p"), "rank_p": record.get("control_rank_p"),
            "verdict": record.get("control_verdict"), "seeds": record.get("control_compared_seeds")}


def _block_rows(scan) -> list[dict[str, Any]]:
    sensitivity = _sensitivity(scan.dir)
    summary = scan.summary
    if "source" in summary.columns:
        summary = summary[summary["source"].astype(str) == "fz"]
    table = scan.table
    if "source" in table.columns:
        table = table[table["source"].astype(str) == "fz"]
    rows = []
    for record in summary.to_dict("records"):
        block = str(record["block"])
        row: dict[str, Any] = {"block": block}
        for column in _BLOCK_COLUMNS:
            if column in record:
                row[column] = record[column]
        if block in sensitivity:
            row["sensitivity"] = sensitivity[block]
        controls = _controls(record, row)
        if controls:
            row["controls"] = controls
        if "undetermined" not in row and "verdict" in table.columns:
            part = table[table["block"].astype(str) == block]
            if "seed" not in part.columns or part["seed"].nunique() <= 1:
                row["undetermined"] = int((part["verdict"].astype(str) == "undetermined").sum())
        rows.append(row)
    return rows


def _ablation(sweep) -> dict[str, Any]:
    from rsi_plugin.ablation.eq3_stats import verdict

    manifest = sweep.manifest
    block = str(manifest.get("block", "?"))
    eq3 = sweep.eq3
    out: dict[str, Any] = {"block": block, "channels": len(manifest.get("channels") or []),
                           "trials_asked": manifest.get("trials"), "tolerance_setting": manifest.get("tolerance"),
                           "null_sets": manifest.get("null_sets"), "node": manifest.get("node")}
    kept = None
    if eq3 is not None and "trials_kept" in eq3.columns and len(eq3):
        kept = int(eq3["trials_kept"].iloc[0])
        out["draws"] = int(eq3["draws"].iloc[0]) if "draws" in eq3.columns else None
        out["tolerance"] = eq3["tolerance"].iloc[0] if "tolerance" in eq3.columns else manifest.get("tolerance")
    elif sweep.draws is not None and "kept" in sweep.draws.columns:
        kept = int(sweep.draws["kept"].astype(str).isin(["True", "true", "1"]).sum())
        out["draws"] = len(sweep.draws)
        out["tolerance"] = manifest.get("tolerance")
    out["trials_kept"] = kept
    scales = []
    if eq3 is not None:
        for record in eq3.to_dict("records"):
            scales.append({"scale": record["scale"], **{c: record[c] for c in _SCALE_COLUMNS if c in record}})
    out["scales"] = scales
    out["verdict"] = verdict(eq3, block) if eq3 is not None else f"Block {block}: no Eq. 3 table (unfinished sweep)."
    return out


def summarize_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    r"""The headline numbers of a run directory, from its files alone.

    Args:
        run_dir (str or path): a folder holding ``scan.csv`` and/or sweep folders below it
            (``rsi demo``, ``rsi scan --out``, ``rsi ablate --out``).

    Returns:
        dict, JSON-ready (floats to 6 significant digits, NaN as None): ``format``,
        ``settings`` (model, weights and the run's settings that change results),
        ``blocks`` (one dict per scanned block: ``channels``, ``passing`` and, when the scan
        has them, ``robust``, ``any_seed``, ``undetermined``, ``seeds``, ``jaccard_mean``,
        ``jaccard_min``, ``jaccard_max``) and ``ablations`` (one dict per sweep:
        ``trials_asked``, ``trials_kept``, ``draws``, ``tolerance``, ``scales`` with Eq. 3
        and its tests, ``verdict``).

        Every scan below ``run_dir`` is summarised, in path order. With more than one, each
        block row also has ``scan`` (its folder relative to ``run_dir``, e.g. ``"beta/scan"``)
        and ``model`` (when the scan recorded it), each sweep the ``scan`` that holds its block
        (the nearest by path), and the Markdown and the report name rows as ``"<scan> <block>"``
        (:func:`rsi_plugin.outputs.method_card.row_label`), as ``pandas.concat(keys=...)``
        keeps the frames apart. A single scan's rows have no ``scan`` key.

    Raises:
        FileNotFoundError: not a directory. ValueError: no scan and no sweep below it.
    """
    from rsi_plugin.outputs.contents import discover

    contents = discover(run_dir)
    if not contents.scans and not contents.sweeps:
        raise RSIError(f"{contents.root} holds no scan.csv and no sweep.json below it: nothing to summarise")
    return summarize_contents(contents)


def summarize_contents(contents) -> dict[str, Any]:
    """:func:`summarize_run` of what :func:`rsi_plugin.outputs.contents.discover` found."""
    settings = {k: contents.settings[k] for k in _SETTING_KEYS if k in contents.settings}
    settings.setdefault("model", contents.model)
    settings.setdefault("weights", contents.weights)
    many = len(contents.scans) > 1
    blocks = []
    for scan in contents.scans:
        rows = _block_rows(scan)
        if many:  # every scan, each row labelled by its folder (and model, when recorded)
            for row in rows:
                row["scan"] = _folder(scan.dir, contents.root)
                if scan.attrs.get("model"):
                    row["model"] = scan.attrs["model"]
        blocks += rows
    ablations = [_ablation(s) for s in contents.sweeps]
    if many:
        for sweep, ablation in zip(contents.sweeps, ablations):
            owner = _owner(sweep.dir, ablation["block"], contents.scans)
            if owner is not None:
                ablation["scan"] = _folder(owner.dir, contents.root)
    out = {"format": FORMAT, "settings": settings, "blocks": blocks, "ablations": ablations}
    planted = _planted(contents.root)
    if planted is not None:
        out["planted"] = planted
    return _clean(out)


def _folder(folder: Path, root: Path) -> str:
    """A scan folder's name in a summary: its path relative to the run directory."""
    relative = Path(folder).relative_to(root).as_posix()
    return "." if relative in ("", ".") else relative


def _owner(sweep_dir: Path, block: str, scans) -> Any:
    """The scan a sweep of ``block`` belongs to: among the scans holding the block, the one
    whose folder shares the longest path with the sweep's; None when no scan holds it."""
    holding = [s for s in scans if block in set(s.table["block"].astype(str))]
    if not holding:
        return None
    return max(holding, key=lambda s: len(os.path.commonpath([os.path.abspath(s.dir), os.path.abspath(sweep_dir)])))


_PLANTED_KEYS = ("block", "planted", "seeds", "recall", "false_positive_rate", "planted_rows", "other_rows",
                 "undetermined", "missed", "false_positives", "controls", "control_passing", "control_planted_p",
                 "control_base_rate", "eq3_detected", "eq3_verdict")


def _planted(root: Path) -> dict[str, Any] | None:
    """The planted positive control's numbers (``planted/planted.json``, :mod:`rsi_plugin.apps.planted`), or None."""
    from rsi_plugin.core.runfolder import RunLayout

    path = RunLayout(root).planted.summary
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return {k: data[k] for k in _PLANTED_KEYS if k in data}


def write_output(path: str | os.PathLike, text: str) -> Path:
    """Write a text output of ``rsi report`` atomically (:func:`~rsi_plugin.core.atomic.atomic_write_text`).

    Raises:
        PathError: the write failed (a full disk, a read-only or unwritable folder); the
            message names the file and the reason, and nothing partial is left: ``path``
            keeps its previous content, if any.
    """
    import errno

    path = Path(path)
    try:
        return atomic_write_text(path, text)
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        hint = ("free some disk space and rerun" if error.errno in (errno.ENOSPC, errno.EDQUOT)
                else "give a folder you can write to")
        raise PathError(f"could not write {path}: {reason}; nothing was written (an existing file is kept "
                        f"unchanged): {hint}") from None


def write_summary(summary: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a summary as indented, key-sorted JSON (atomically; parent folders made).

    Raises:
        PathError: the file could not be written (:func:`write_output`).
    """
    return write_output(Path(path), json.dumps(summary, indent=2, sort_keys=True) + "\n")


def read_summary(path: str | os.PathLike) -> dict[str, Any]:
    """Read a summary file.

    Raises:
        FileNotFoundError: no such file. ValueError: not a summary of a known format.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"results summary not found: {path}")
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RSIError(f"{path} is not a results summary of format {FORMAT} (from rsi report --summary-json)")
    return data


# --------------------------------------------------------------------------- Markdown


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _p(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.2g}" if value >= 0.001 else f"{value:.1e}"


def _pct(scale: Any) -> str:
    return f"{100 * float(scale):g} %"


def _blocks_table(blocks: list[dict[str, Any]]) -> list[str]:
    from rsi_plugin.outputs.method_card import row_label

    names = [row_label(b) for b in blocks]
    lines = ["| block | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    seeded = any(b.get("robust") is not None for b in blocks)
    first = "robust / channels" if seeded else "passing / channels"
    lines.append(f"| {first} | " + " | ".join(f"{b.get('robust', b.get('passing'))}/{b.get('channels')}"
                                             for b in blocks) + " |")
    if any(b.get("any_seed") is not None for b in blocks):
        lines.append("| passing in any seed | " + " | ".join(_num(b.get("any_seed")) for b in blocks) + " |")
    if any(b.get("undetermined") is not None for b in blocks):
        lines.append("| undetermined | " + " | ".join(_num(b.get("undetermined")) for b in blocks) + " |")
    if any(b.get("controls") for b in blocks):
        seeds = next((b["controls"].get("seeds") for b in blocks if b.get("controls")), None)
        on = "" if seeds is None else f" (seed{'s' if len(str(seeds).split()) > 1 else ''} {seeds})"
        lines.append(f"| robust, trained, as compared{on} | " + " | ".join(
            str(b["controls"].get("trained")) if b.get("controls") else "–" for b in blocks) + " |")
        lines.append(f"| robust in each untrained copy{on} | " + " | ".join(
            ", ".join(str(c) for c in b["controls"]["counts"]) if b.get("controls") else "–" for b in blocks) + " |")
        lines.append("| trained > untrained: one-sided exact p | " + " | ".join(
            _p(b["controls"].get("p")) if b.get("controls") else "–" for b in blocks) + " |")
    if any(b.get("jaccard_mean") is not None for b in blocks):
        cells = []
        for b in blocks:
            mean = b.get("jaccard_mean")
            cells.append("–" if mean is None else
                         f"{mean:.2f} ({_num(b.get('jaccard_min'), 2)}–{_num(b.get('jaccard_max'), 2)})")
        lines.append("| seed Jaccard, mean (range) | " + " | ".join(cells) + " |")
    return lines


def _eq3_tables(ablations: list[dict[str, Any]]) -> list[str]:
    from rsi_plugin.outputs.method_card import row_label

    scales = sorted({s["scale"] for a in ablations for s in a["scales"] if s["scale"] != 0})
    header = "| | " + " | ".join(_pct(s) for s in scales) + " |"
    rule = "|---|" + "---|" * len(scales)
    ratio = [header, rule]
    tests = [header, rule]
    for a in ablations:
        by = {s["scale"]: s for s in a["scales"]}
        cells, p_cells, null_cells, power_cells = [], [], [], []
        for scale in scales:
            s = by.get(scale, {})
            mean, se = s.get("ratio_mean"), s.get("ratio_se")
            cells.append(_num(mean) + ("" if se is None else f" ± {se:.2g}"))  # the spread to 2 significant digits
            p_cells.append(f"{_p(s.get('p_permutation'))} / {_p(s.get('p_sign'))}")
            null_cells.append(f"{_p(s.get('p_null'))}")
            deficit, detectable = s.get("deficit"), s.get("detectable_deficit")
            power_cells.append(f"{_num(deficit, 4)} / " + ("none detectable" if detectable is None else
                                                           f"< {detectable:.4f}"))
        ratio.append(f"| block {row_label(a)} | " + " | ".join(cells) + " |")
        first = next((s for s in a["scales"] if s.get("scale") not in (0, 0.0)), a["scales"][0] if a["scales"] else {})
        distinct = first.get("distinct_random")
        paired = "paired permutation / sign p" + ("" if distinct is None else f" ({distinct} distinct sets)")
        tests.append(f"| block {row_label(a)}: {paired} | " + " | ".join(p_cells) + " |")
        exact = ", all there are: exact" if first.get("exact_null") else ""
        n_null = (f"{first['distinct_null']} distinct sets{exact}" if first.get("distinct_null") is not None
                  else f"{first.get('n_null', 0)} sets")  # a summary from before distinct draws
        tests.append(f"| block {row_label(a)}: null p ({n_null}) | " + " | ".join(null_cells) + " |")
        if any("detectable_deficit" in s for s in a["scales"]):
            tests.append(f"| block {row_label(a)}: deficit D / detectable when D | " + " | ".join(power_cells) + " |")
    return ratio + [""] + tests


def _planted_lines(planted: dict[str, Any]) -> list[str]:
    seeds = planted.get("seeds") or []
    text = (f"Planted positive control (`load_model(\"planted\")`, block {planted.get('block')}, "
            f"{len(planted.get('planted') or [])} planted channels, {len(seeds)} seed(s)): recall "
            f"{_num(planted.get('recall'), 2)}, false-positive rate {_num(planted.get('false_positive_rate'), 3)}")
    if planted.get("control_planted_p") is not None:
        n = len(planted.get("planted") or [])
        text += (f"; in {len(planted.get('controls') or [])} untrained copies {planted.get('control_passing')} of the "
                 f"{n} planted channel indices pass in every seed (the copies pass "
                 f"{_num(planted.get('control_base_rate'), 3)} of all channels so), planted model > copies: "
                 f"one-sided exact p {_p(planted.get('control_planted_p'))}")
    text += "."
    lines = [text]
    if planted.get("eq3_verdict"):
        lines += ["", f"- Eq. 3 positive control: {planted['eq3_verdict']}"]
    return lines


def render_markdown(summary: dict[str, Any]) -> str:
    r"""The "What the demo finds" tables of a summary, as Markdown.

    Args:
        summary (dict): from :func:`summarize_run` or :func:`read_summary`.

    Returns:
        str (ends with a newline): the method card (:mod:`rsi_plugin.outputs.method_card`), the
        per-block passing table, the random sets kept per
        ablated block, Eq. 3 per scale (mean ± standard error), the tests' p-values and one
        verdict sentence per ablated block.
    """
    from rsi_plugin.outputs.method_card import card_markdown, method_card

    from rsi_plugin.outputs.method_card import row_label

    lines: list[str] = [f"> **{text}**" for text in run_warnings(summary.get("settings") or {})]
    if lines:
        lines.append("")
    blocks = summary.get("blocks") or []
    if blocks or summary.get("ablations"):
        lines += ["**Method card** — can each finding be believed? One mark per check and block:", ""]
        lines += card_markdown(method_card(summary)).rstrip("\n").splitlines() + [""]
    planted = summary.get("planted")
    if planted:
        lines += _planted_lines(planted) + [""]
    if blocks:
        lines += _blocks_table(blocks) + [""]
    ablations = summary.get("ablations") or []
    settings = summary.get("settings") or {}
    chosen = settings.get("ablation_blocks_chosen")
    if blocks and not ablations and chosen is not None and len(chosen) == 0:
        channel_set = settings.get("channel_set", "robust")
        lines.append(f"No block was ablated: no scanned block has a channel in the `{channel_set}` set, so this run "
                     "has no random control sets and no Eq. 3 test.")
    if ablations:
        lines.append("Random control sets (screened in the no-scale condition):")
        lines.append("")
        for a in ablations:
            kept, asked = a.get("trials_kept"), a.get("trials_asked")
            tolerance = a.get("tolerance")
            setting = a.get("tolerance_setting")
            how = f"tolerance {_num(tolerance, 4)}" + (f" (setting {setting})" if str(setting) == "auto" else "")
            short = "" if kept is None or asked is None or kept >= asked else " — **fewer than asked**"
            n = a.get("channels")
            lines.append(f"- block {row_label(a)} ({n} channel{'' if n == 1 else 's'}): {kept} of {asked} kept from "
                         f"{a.get('draws')} draws, {how}{short}")
        lines.append("")
        lines.append("Eq. 3 (mean acc(invariant) / acc(random) ± standard error over the kept sets; no-scale ratio "
                     + ", ".join(f"{_num(a['scales'][0].get('no_scale_ratio'))} at {row_label(a)}"
                                 for a in ablations if a["scales"]) + "):")
        lines.append("")
        lines += _eq3_tables(ablations)
        lines.append("")
        lines += [f"- {a['verdict']}" for a in ablations]
    return "\n".join(lines).rstrip() + "\n"


NOTE = "<!-- generated from the results summary by rsi report --update-readme; do not edit by hand -->"


def readme_block(summary: dict[str, Any]) -> str:
    """The README's generated block: markers and :data:`NOTE` around :func:`render_markdown`."""
    return f"{START}\n{NOTE}\n{render_markdown(summary)}{END}"


def marker_lines(text: str, name: str = "results") -> tuple[list[int], list[int]]:
    """Offsets of the lines that are exactly ``<!-- name:start -->`` and ``<!-- name:end -->``
    (default :data:`START` and :data:`END`; markers quoted inside prose do not count)."""
    import re

    start, end = _markers(name)
    return ([m.start() for m in re.finditer(rf"^{re.escape(start)}[ \t]*$", text, re.M)],
            [m.start() for m in re.finditer(rf"^{re.escape(end)}[ \t]*$", text, re.M)])


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def _split(text: str, path: Path, name: str = "results") -> tuple[str, str, str]:
    starts, ends = marker_lines(text, name)
    start_marker, end_marker = _markers(name)
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise RSIError(f"{path} must hold exactly one line {start_marker} followed by one line {end_marker}")
    start, end = starts[0], ends[0]
    return text[:start], text[start:end + len(end_marker)], text[end + len(end_marker):]


def replace_readme_block(readme: str | os.PathLike, name: str, body: str) -> Path:
    r"""Rewrite a README's generated block ``name``: the lines ``<!-- name:start -->`` and
    ``<!-- name:end -->`` with ``body`` between them (the benchmarks' result tables use it;
    :func:`update_readme` is the ``results`` block of a run).

    Args:
        readme (str or path): the README (must hold the two marker lines once each, in order).
        name (str): the block's name.
        body (str): the text between the markers (ends with a newline).

    Returns:
        Path of the README.

    Raises:
        RSIError: markers missing, repeated or out of order.
        PathError: the file could not be written.
    """
    readme = Path(readme)
    before, _, after = _split(readme.read_text(), readme, name)
    start, end = _markers(name)
    return write_output(readme, f"{before}{start}\n{body}{end}{after}")


def update_readme(readme: str | os.PathLike, summary_path: str | os.PathLike) -> Path:
    r"""Rewrite the README's block between :data:`START` and :data:`END` from a summary file.

    Args:
        readme (str or path): the README (must hold the two markers once each).
        summary_path (str or path): the summary JSON (:func:`write_summary`).

    Returns:
        Path of the README.

    Raises:
        FileNotFoundError, ValueError: a missing file, markers missing or repeated.
    """
    readme = Path(readme)
    before, _, after = _split(readme.read_text(), readme)
    block = readme_block(read_summary(summary_path))
    return write_output(readme, before + block + after)


def check_readme(readme: str | os.PathLike, summary_path: str | os.PathLike) -> list[str]:
    r"""Where the README's generated block and the summary file disagree.

    Args:
        readme (str or path): the README.
        summary_path (str or path): the summary JSON.

    Returns:
        list of str: the README lines that differ from what the file renders (empty when
        they agree).

    Raises:
        FileNotFoundError, ValueError: a missing file, markers missing or repeated.
    """
    readme = Path(readme)
    _, block, _ = _split(readme.read_text(), readme)
    want = readme_block(read_summary(summary_path))
    if block == want:
        return []
    import difflib

    return [line for line in difflib.unified_diff(want.splitlines(), block.splitlines(), "rendered", "README",
                                                  lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]
