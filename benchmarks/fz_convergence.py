"""Issue 12's convergence and seed-agreement measurements from scan folders (not a timed benchmark).

Reads the ``scan.csv`` (and the FZ cache's ``config.json``) of ``rsi scan`` folders and
writes JSON results and a markdown summary whose tables (and the sentences with numbers)
are generated here, never typed.

Three steps::

    # A: a short cap (e.g. 512) against a cap of 2560, same seeds and channels (plateau stop in both)
    python benchmarks/fz_convergence.py convergence --default A512 --long A2560 \
        --json benchmarks/results/convergence_2560.json
    # B: two independent 3-seed runs (e.g. seeds 0 1 2 and 3 4 5) of the same blocks
    python benchmarks/fz_convergence.py agreement --first B012 --second B345 \
        --json benchmarks/results/seed_agreement_tiny_3v3.json
    # the markdown summary of both JSON files
    python benchmarks/fz_convergence.py markdown --convergence benchmarks/results/convergence_2560.json \
        --agreement benchmarks/results/seed_agreement_tiny_3v3.json --out benchmarks/results/issue12-measurements.md

``convergence`` compares only the (seed, block, channel) rows present in both folders. With
the plateau rule the first ``cap`` steps of a longer run are the same computation as the
shorter run (same transforms, same checks), so an FZ that stopped before the short cap must
come out identical in both; the ``prefix_check`` entry counts the rows where it does not
(a nonzero count means the two runs are not comparable, e.g. other thread counts).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rsi_plugin.core.runfolder import ScanFiles  # noqa: E402
from rsi_plugin.criteria.channel_scan import read_table  # noqa: E402
from rsi_plugin.criteria.seeds import adaptive_error, block_summary, channel_table, verdicts  # noqa: E402

NODES = ("in", "pre")
STATUSES = ("ok", "dead", "flat", "unconverged")
VERDICTS = ("pass", "fail", "undetermined")


# ---------------------------------------------------------------- reading


def fz_settings(folder: Path) -> dict[str, Any]:
    """The feature-visualisation settings of a scan folder (from its cache's config.json files;
    the per-block jitter is listed separately)."""
    configs = [json.loads(p.read_text()) for p in sorted(ScanFiles(folder).fz_cache.rglob("config.json"))]
    if not configs:
        raise FileNotFoundError(f"no FZ cache config.json under {ScanFiles(folder).fz_cache}: "
                                "is this an `rsi scan` folder?")
    keys = ("steps", "early_stop", "plateau_window", "plateau_rtol", "image_size", "pre_activation",
            "scale_jitter", "threads", "torch", "lr")
    settings: dict[str, Any] = {}
    for key in keys:
        values = sorted({json.dumps(c.get(key)) for c in configs})
        settings[key] = json.loads(values[0]) if len(values) == 1 else [json.loads(v) for v in values]
    settings["seeds"] = sorted({int(c["seed"]) for c in configs if "seed" in c})
    return settings


def load_scan(folder: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``scan.csv`` of a folder (FZ rows only) and its FZ settings."""
    folder = Path(folder)
    path = ScanFiles(folder).table
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `rsi scan --out {folder}` first")
    table = read_table(path)
    if "source" in table.columns:
        table = table[table["source"] == "fz"].reset_index(drop=True)
    missing = [c for c in ("seed", "block", "channel", "in_status", "pre_status", "in_steps_used",
                           "pre_steps_used") if c not in table.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}: written by an older rsi scan?")
    table["block"] = table["block"].astype(str)
    table["verdict"] = verdicts(table)
    return table, fz_settings(folder)


# ---------------------------------------------------------------- helpers


def jaccard(a: set, b: set) -> float | None:
    return len(a & b) / len(a | b) if (a | b) else None


def chance_jaccard(n: int, a: int, b: int) -> float | None:
    """Expected Jaccard of a random a-subset and an independent random b-subset of n items
    (hypergeometric overlap); None when both are empty."""
    if a == 0 and b == 0:
        return None
    from math import comb

    total = comb(n, b)
    expected = 0.0
    for k in range(max(0, a + b - n), min(a, b) + 1):
        p = comb(a, k) * comb(n - a, b - k) / total
        expected += p * k / (a + b - k)
    return expected


def quantiles(values: pd.Series) -> dict[str, float | int]:
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if not len(v):
        return {"n": 0}
    q = np.quantile(v, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {"n": int(len(v)), "min": float(q[0]), "q1": float(q[1]), "median": float(q[2]), "q3": float(q[3]),
            "max": float(q[4]), "mean": float(v.mean())}


def steps_table(table: pd.DataFrame, cap: int) -> list[dict[str, Any]]:
    """Per block and node: the distribution of steps used, the share that stopped before the cap,
    and the status counts (over every seed's row)."""
    rows = []
    for block, part in table.groupby("block", sort=False):
        for node in NODES:
            used = pd.to_numeric(part[f"{node}_steps_used"], errors="coerce")
            status = part[f"{node}_status"].astype(str)
            row = {"block": block, "node": node, "cap": cap, **quantiles(used),
                   "stopped_before_cap": int((used < cap).sum()), "ok_steps": quantiles(used[status == "ok"]),
                   **{f"status_{s}": int((status == s).sum()) for s in STATUSES}}
            rows.append(row)
    return rows


def sets_by_block(channels: pd.DataFrame, column: str) -> dict[str, set[int]]:
    return {b: set(int(c) for c in part.loc[part[column].astype(bool), "channel"])
            for b, part in channels.groupby("block", sort=False)}


def counts_by_block(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Per block: the robust / any-seed / undetermined / not-robust channel counts over the seeds
    of ``table``, the seed Jaccard and the permutation null (rsi_plugin.criteria.seeds.block_summary)."""
    summary = block_summary(table)
    keep = ["block", "channels", "seeds", "robust", "any_seed", "undetermined", "not_robust", "passing_mean",
            "passing_min", "passing_max", "undetermined_mean", "jaccard_mean", "jaccard_min", "jaccard_max",
            "null_expected", "null_high", "null_p"]
    out = []
    for record in summary[[c for c in keep if c in summary.columns]].to_dict("records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else
                        (v.item() if hasattr(v, "item") else v)) for k, v in record.items()})
    return out


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, set):
        return sorted(_clean(v) for v in value)
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write(path: str, result: dict[str, Any]) -> None:
    from rsi_plugin.core.atomic import atomic_write

    text = json.dumps(_clean(result), indent=1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text + "\n"))
    print("wrote", path)


def _meta(argv: list[str]) -> dict[str, Any]:
    import platform

    import torch

    return {"command": "python benchmarks/fz_convergence.py " + " ".join(argv),
            "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
            "machine": platform.machine(), "cpus": __import__("os").cpu_count()}


# ---------------------------------------------------------------- A: convergence


def _is_full(table: pd.DataFrame) -> bool:
    """Every channel rendered in every seed of the run (not an adaptive run)."""
    seeds = table["seed"].nunique()
    return bool((table.groupby(["block", "channel"])["seed"].nunique() == seeds).all())


def _replay(table: pd.DataFrame) -> dict[str, Any]:
    """The adaptive rule replayed on a full run; ``{"adaptive_run": True}`` for a run that was
    already adaptive (its skipped seeds were never rendered, so there is nothing to replay)."""
    return adaptive_error(table) if _is_full(table) else {"adaptive_run": True}


def convergence(default_dir: str, long_dir: str) -> dict[str, Any]:
    """The default (short cap) scan against a long-cap scan on their common rows."""
    short, s_set = load_scan(default_dir)
    long, l_set = load_scan(long_dir)
    cap_s, cap_l = int(s_set["steps"]), int(l_set["steps"])
    key = ["seed", "block", "channel"]
    common = short[key].merge(long[key], on=key)
    if common.empty:
        raise ValueError(f"{default_dir} and {long_dir} share no (seed, block, channel) row")
    short = short.merge(common, on=key).sort_values(key).reset_index(drop=True)
    long = long.merge(common, on=key).sort_values(key).reset_index(drop=True)
    both = short.merge(long, on=key, suffixes=("_s", "_l"))

    # the prefix identity: rows whose two FZs both stopped before the short cap
    early = both[(both["in_steps_used_s"] < cap_s) & (both["pre_steps_used_s"] < cap_s)]
    same = ((early["in_steps_used_s"] == early["in_steps_used_l"]) & (early["pre_steps_used_s"] == early["pre_steps_used_l"])
            & np.isclose(early["in_fz_act_s"], early["in_fz_act_l"], rtol=0, atol=1e-6)
            & np.isclose(early["pre_fz_act_s"], early["pre_fz_act_l"], rtol=0, atol=1e-6)
            & (early["verdict_s"] == early["verdict_l"]))
    prefix = {"rows_stopped_before_short_cap": int(len(early)), "identical": int(same.sum()),
              "differing": [dict(seed=int(r.seed), block=r.block, channel=int(r.channel))
                            for r in early[~same].itertuples()]}

    # per node FZ: what happened to the FZs that were unconverged at the short cap
    fates = []
    for block, part in both.groupby("block", sort=False):
        for node in NODES:
            was = part[part[f"{node}_status_s"] == "unconverged"]
            now = was[f"{node}_status_l"].astype(str)
            gain = (pd.to_numeric(was[f"{node}_fz_act_l"]) / pd.to_numeric(was[f"{node}_fz_act_s"])).replace(
                [np.inf, -np.inf], np.nan)
            fates.append({"block": block, "node": node, "unconverged_at_short_cap": int(len(was)),
                          **{f"then_{s}": int((now == s).sum()) for s in STATUSES},
                          "steps_used_long": quantiles(was[f"{node}_steps_used_l"]),
                          "objective_ratio_long_over_short": quantiles(gain)})

    # per seed: verdict transitions and passing sets
    per_seed = []
    for (seed, block), part in both.groupby(["seed", "block"], sort=False):
        cross = pd.crosstab(part["verdict_s"], part["verdict_l"])
        pass_s = set(part.loc[part["verdict_s"] == "pass", "channel"].astype(int))
        pass_l = set(part.loc[part["verdict_l"] == "pass", "channel"].astype(int))
        per_seed.append({"seed": int(seed), "block": block, "channels": int(len(part)),
                         "transitions": {f"{a}->{b}": int(cross.loc[a, b]) for a in cross.index for b in cross.columns
                                         if cross.loc[a, b]},
                         **{f"{v}_short": int((part["verdict_s"] == v).sum()) for v in VERDICTS},
                         **{f"{v}_long": int((part["verdict_l"] == v).sum()) for v in VERDICTS},
                         "passing_short": pass_s, "passing_long": pass_l, "passing_jaccard": jaccard(pass_s, pass_l)})

    # the undetermined rows of the short cap: what their equations said there, and their verdict at the long cap
    und = both[both["verdict_s"] == "undetermined"]
    met = und["eq1_s"].astype(str).str.lower().isin(("true", "1")) & und["eq2_s"].astype(str).str.lower().isin(("true", "1"))
    masked = {"rows": int(len(und)), "equations_met_short": int(met.sum()),
              "met_then": {v: int((und.loc[met, "verdict_l"] == v).sum()) for v in VERDICTS},
              "not_met_then": {v: int((und.loc[~met, "verdict_l"] == v).sum()) for v in VERDICTS}}

    # over the seeds: robust / any-seed sets at each cap
    ch_s, ch_l = channel_table(short), channel_table(long)
    sets = []
    for block in dict.fromkeys(ch_s["block"]):
        a, b = ch_s[ch_s.block == block], ch_l[ch_l.block == block]
        ra, rb = set(a.loc[a.robust, "channel"].astype(int)), set(b.loc[b.robust, "channel"].astype(int))
        aa, ab = set(a.loc[a.any_seed, "channel"].astype(int)), set(b.loc[b.any_seed, "channel"].astype(int))
        sets.append({"block": block, "robust_short": ra, "robust_long": rb, "robust_jaccard": jaccard(ra, rb),
                     "any_seed_short": aa, "any_seed_long": ab, "any_seed_jaccard": jaccard(aa, ab)})
    return {
        "default": {"folder": str(default_dir), "settings": s_set},
        "long": {"folder": str(long_dir), "settings": l_set},
        "rows": int(len(both)), "seeds": sorted(int(s) for s in set(both["seed"])),
        "blocks": list(dict.fromkeys(both["block"])),
        "steps_short": steps_table(short, cap_s), "steps_long": steps_table(long, cap_l),
        "unconverged_fates": fates, "per_seed": per_seed,
        "summary_short": counts_by_block(short), "summary_long": counts_by_block(long),
        "sets": sets, "prefix_check": prefix, "undetermined_short": masked,
    }


# ---------------------------------------------------------------- B: seed agreement


def agreement(first_dir: str, second_dir: str) -> dict[str, Any]:
    """Two independent multi-seed scans of the same blocks and channels."""
    a, a_set = load_scan(first_dir)
    b, b_set = load_scan(second_dir)
    seeds_a, seeds_b = sorted(int(s) for s in set(a["seed"])), sorted(int(s) for s in set(b["seed"]))
    if set(seeds_a) & set(seeds_b):
        raise ValueError(f"the two scans share seeds {sorted(set(seeds_a) & set(seeds_b))}: not independent")
    ca, cb = channel_table(a), channel_table(b)
    blocks = [blk for blk in dict.fromkeys(ca["block"]) if blk in set(cb["block"])]
    compare = []
    for block in blocks:
        pa, pb = ca[ca.block == block], cb[cb.block == block]
        n = int(len(set(pa["channel"]) & set(pb["channel"])))
        ra, rb = sets_by_block(pa, "robust")[block], sets_by_block(pb, "robust")[block]
        aa, ab = sets_by_block(pa, "any_seed")[block], sets_by_block(pb, "any_seed")[block]
        und_a = set(pa.loc[pa.status == "undetermined", "channel"].astype(int))
        und_b = set(pb.loc[pb.status == "undetermined", "channel"].astype(int))
        compare.append({"block": block, "channels": n,
                        "channel_list": sorted(int(c) for c in set(pa["channel"]) & set(pb["channel"])), "robust_first": ra, "robust_second": rb,
                        "robust_jaccard": jaccard(ra, rb), "robust_chance": chance_jaccard(n, len(ra), len(rb)),
                        "any_seed_first": aa, "any_seed_second": ab, "any_seed_jaccard": jaccard(aa, ab),
                        "any_seed_chance": chance_jaccard(n, len(aa), len(ab)),
                        "undetermined_first": len(und_a), "undetermined_second": len(und_b),
                        "undetermined_both": len(und_a & und_b)})
    pooled = pd.concat([a, b], ignore_index=True)
    return {
        "first": {"folder": str(first_dir), "settings": a_set, "seeds": seeds_a},
        "second": {"folder": str(second_dir), "settings": b_set, "seeds": seeds_b},
        "summary_first": counts_by_block(a), "summary_second": counts_by_block(b),
        "summary_pooled": counts_by_block(pooled), "compare": compare,
        "steps": steps_table(pooled, int(a_set["steps"]) if not isinstance(a_set["steps"], list) else -1),
        "verdicts_per_seed": [{"seed": int(s), "block": blk, **{v: int((p["verdict"] == v).sum()) for v in VERDICTS}}
                              for (s, blk), p in pooled.groupby(["seed", "block"], sort=False)],
        "adaptive": {"first": _replay(a), "second": _replay(b),
                     "per_block_first": {blk: _replay(p) for blk, p in a.groupby("block", sort=False)},
                     "per_block_second": {blk: _replay(p) for blk, p in b.groupby("block", sort=False)}},
    }


# ---------------------------------------------------------------- markdown


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, (list, set, tuple)):
        return "{" + ", ".join(str(v) for v in sorted(value)) + "}" if value else "∅"
    return str(value)


def _ranges(values: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    parts, run = [], []
    for v in sorted(values):
        if run and v != run[-1] + 1:
            parts.append(run)
            run = []
        run.append(v)
    if run:
        parts.append(run)
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in parts)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _spread(q: dict[str, Any]) -> str:
    return f"{q['median']:.0f} [{q['q1']:.0f}, {q['q3']:.0f}]" if q.get("n") else "–"


def _steps_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    rows = sorted(rows, key=lambda r: (r["block"], r["node"], r["cap"]))
    return [[r["block"], r["node"], r["cap"], r["n"], int(r["min"]), _spread(r), int(r["max"]),
             f"{r['stopped_before_cap']}/{r['n']}", r["status_ok"], r["status_dead"], r["status_flat"],
             r["status_unconverged"], _spread(r["ok_steps"])] for r in rows]


STEPS_HEADER = ["block", "node", "cap", "FZs", "min", "median [q1, q3]", "max", "stopped < cap", "ok", "dead",
                "flat", "unconverged", "ok FZs: median [q1, q3]"]


def _summary_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[r["block"], r["channels"], r["seeds"], r["robust"], r["any_seed"], r["undetermined"], r["not_robust"],
             f"{r['passing_mean']:.1f} [{r['passing_min']}, {r['passing_max']}]", r["undetermined_mean"],
             r["jaccard_mean"],
             (f"{_fmt(r['jaccard_min'])}–{_fmt(r['jaccard_max'])}" if r["jaccard_min"] is not None else "–"), r["null_expected"], r["null_p"]] for r in rows]


SUMMARY_HEADER = ["block", "channels", "seeds", "robust", "any seed", "undetermined", "not robust",
                  "passing per seed mean [min, max]", "undetermined rows per seed", "seed Jaccard mean", "range", "null robust expected", "null p"]


def markdown(conv: dict[str, Any] | list[dict[str, Any]] | None,
             agree: dict[str, Any] | list[dict[str, Any]] | None) -> str:
    """The summary of convergence and agreement results (each one dict, a list of them, or None)."""
    convs = [] if conv is None else [conv] if isinstance(conv, dict) else list(conv)
    agrees = [] if agree is None else [agree] if isinstance(agree, dict) else list(agree)
    out = ["# Issue 12: convergence and seed agreement on the bundled tiny model",
           "",
           "Generated by `benchmarks/fz_convergence.py markdown` from the JSON files beside it; do not edit "
           "by hand. The scans, their scope and the exact commands are in `benchmarks/results/README.md`. "
           "Everything ran on a 2-core CPU machine, often shared with other jobs; a scan's numbers do not "
           "depend on the load (the prefix check below compares two scans run under different loads), but can "
           "differ in the last bits between torch thread counts, which each section states. A channel is *undetermined* in a seed when its In or Pre FZ is not `ok` (dead, flat or "
           "unconverged); *robust* when it passes in every seed of a run; *any seed* when it passes in at "
           "least one. In the per-block tables, *undetermined* counts channels whose undetermined seeds decide "
           "whether they are robust (`rsi_plugin.criteria.seeds.channel_table`), and *undetermined rows per seed* the "
           "(channel, seed) verdicts that are undetermined.", ""]
    for agree in agrees:
        sa, sb = agree["first"], agree["second"]
        cap = sa["settings"]["steps"]
        blocks = ", ".join(c["block"] for c in agree["compare"])
        out += ["", f"## B. Two independent {len(sa['seeds'])}-seed runs (plateau stop, cap "
                f"{cap}): {blocks}", "",
                f"Seeds {sa['seeds']} vs {sb['seeds']}; torch threads {sa['settings'].get('threads', '?')} and "
                f"{sb['settings'].get('threads', '?')}; channels scanned: "
                + "; ".join(f"{c['block']}: {_ranges(c['channel_list'])}" for c in agree["compare"]) + ". Chance: the expected Jaccard of two random "
                "sets of the same sizes among the block's channels.", ""]
        out += _table(["block", "channels", "robust (first)", "robust (second)", "robust Jaccard", "chance",
                       "any-seed Jaccard", "chance ", "undetermined first / second / both"],
                      [[c["block"], c["channels"], c["robust_first"], c["robust_second"], c["robust_jaccard"],
                        c["robust_chance"], c["any_seed_jaccard"], c["any_seed_chance"],
                        f"{c['undetermined_first']} / {c['undetermined_second']} / {c['undetermined_both']}"]
                       for c in agree["compare"]])
        for name, key in (("first run", "summary_first"), ("second run", "summary_second"),
                          (f"both pooled ({len(sa['seeds']) + len(sb['seeds'])} seeds)", "summary_pooled")):
            out += ["", f"Per block, {name}:", ""]
            out += _table(SUMMARY_HEADER, _summary_rows(agree[key]))
        out += ["", f"Steps used per FZ (cap {cap}), all {len(sa['seeds']) + len(sb['seeds'])} "
                "seeds pooled:", ""]
        out += _table(STEPS_HEADER, _steps_rows(agree["steps"]))
        ad = agree["adaptive"]
        replays = []
        for name in ("first", "second"):
            r = ad[name]
            replays.append(f"{name} run: adaptive itself, nothing to replay" if r.get("adaptive_run") else
                           f"{name} run {r['stopped']} of {r['channels']} channels stopped after one seed, "
                           f"{r['errors']} of them with a wrong robust or any-seed membership, {r['saved']:.0%} of "
                           "renders saved")
        out += ["", "The adaptive seed rule (`rsi_plugin.criteria.seeds.adaptive_error`) replayed on each run "
                "that rendered every seed: " + "; ".join(replays) + "."]
        total = sum(c["channels"] for c in agree["compare"])
        robust = sum(len(c["robust_first"]) + len(c["robust_second"]) for c in agree["compare"])
        reached = [c["block"] for c in agree["compare"] if c["robust_jaccard"] is not None and c["robust_jaccard"] >= 0.8]
        defined = [c["block"] for c in agree["compare"] if c["robust_jaccard"] is not None]
        out += ["", f"**Finding (B, {blocks}).** Over {total} channels the two runs have {robust} robust channels in all "
                f"(both runs counted). The robust-set Jaccard is defined (some run has a robust channel) in "
                f"{len(defined)} of {len(agree['compare'])} blocks and reaches the issue's goal of 0.8 in "
                f"{len(reached)}{' (' + ', '.join(reached) + ')' if reached else ''}."]
    for conv in convs:
        cs, cl = conv["default"]["settings"], conv["long"]["settings"]
        out += ["", f"## A. A cap of {cs['steps']} vs a cap of {cl['steps']} (plateau stop in both), same seeds: "
                f"{', '.join(conv['blocks'])}",
                "", f"Seeds {conv['seeds']}, blocks {', '.join(conv['blocks'])}, {conv['rows']} (seed, channel) rows, "
                f"torch threads {cs.get('threads', '?')} and {cl.get('threads', '?')}. "
                "Both runs stop an FZ at its plateau (window "
                f"{cs['plateau_window']} steps, relative gain ≤ {cs['plateau_rtol']}); the long run only lets the "
                "unconverged ones go on.", "",
                f"Prefix check: of {conv['prefix_check']['rows_stopped_before_short_cap']} rows whose two FZs stopped "
                f"before step {cs['steps']}, {conv['prefix_check']['identical']} are identical in the long run "
                "(steps used, activations, verdict).", "", "Steps used per FZ:", ""]
        out += _table(STEPS_HEADER, _steps_rows(conv["steps_short"] + conv["steps_long"]))
        out += ["", f"What became of the FZs unconverged at cap {cs['steps']}, and their objective at the long cap "
                "over that at the short cap:", ""]
        out += _table(["block", "node", f"unconverged at {cs['steps']}", "then ok", "dead", "flat", "still unconverged",
                       "steps used (median [q1, q3])", "objective ratio (median [q1, q3])"],
                      [[f["block"], f["node"], f["unconverged_at_short_cap"], f["then_ok"], f["then_dead"],
                        f["then_flat"], f["then_unconverged"],
                        _spread(f["steps_used_long"]),
                        (f"{f['objective_ratio_long_over_short']['median']:.2f} "
                         f"[{f['objective_ratio_long_over_short']['q1']:.2f}, "
                         f"{f['objective_ratio_long_over_short']['q3']:.2f}]")
                        if f["objective_ratio_long_over_short"]["n"] else "–"]
                       for f in conv["unconverged_fates"]])
        out += ["", "Verdicts per seed (short → long cap) and the passing sets:", ""]
        out += _table(["seed", "block", "pass", "fail", "undetermined", "transitions", "passing (short)",
                       "passing (long)", "Jaccard"],
                      [[p["seed"], p["block"], f"{p['pass_short']} → {p['pass_long']}",
                        f"{p['fail_short']} → {p['fail_long']}",
                        f"{p['undetermined_short']} → {p['undetermined_long']}",
                        ", ".join(f"{k} {v}" for k, v in p["transitions"].items() if k.split("->")[0] != k.split("->")[1]) or "none",
                        p["passing_short"], p["passing_long"], p["passing_jaccard"]] for p in conv["per_seed"]])
        m = conv.get("undetermined_short")
        if m:
            out += ["", f"Of the {m['rows']} rows undetermined at cap {cs['steps']}, {m['equations_met_short']} met both "
                    f"equations there (a pass hidden by the status); at cap {cl['steps']} those are "
                    + ", ".join(f"{v} {n}" for v, n in m["met_then"].items()) + "; the others are "
                    + ", ".join(f"{v} {n}" for v, n in m["not_met_then"].items()) + "."]
        out += ["", "Over the seeds, per cap:", ""]
        out += _table(["cap"] + SUMMARY_HEADER,
                      [[cs["steps"]] + r for r in _summary_rows(conv["summary_short"])]
                      + [[cl["steps"]] + r for r in _summary_rows(conv["summary_long"])])
        out += ["", "Robust and any-seed sets, short vs long cap:", ""]
        out += _table(["block", "robust (short)", "robust (long)", "Jaccard", "any seed (short)", "any seed (long)",
                       "Jaccard "],
                      [[s["block"], s["robust_short"], s["robust_long"], s["robust_jaccard"], s["any_seed_short"],
                        s["any_seed_long"], s["any_seed_jaccard"]] for s in conv["sets"]])
        n_short = sum(r["status_unconverged"] for r in conv["steps_short"])
        n_long = sum(r["status_unconverged"] for r in conv["steps_long"])
        n_fz = sum(r["n"] for r in conv["steps_short"])
        und_s = sum(p["undetermined_short"] for p in conv["per_seed"])
        und_l = sum(p["undetermined_long"] for p in conv["per_seed"])
        rob_s = sum(r["robust"] for r in conv["summary_short"])
        rob_l = sum(r["robust"] for r in conv["summary_long"])
        out += ["", f"**Finding (A, {', '.join(conv['blocks'])}).** Of {n_fz} FZs, {n_short} are unconverged at cap {cs['steps']} and {n_long} at "
                f"cap {cl['steps']}; undetermined (seed, channel) rows go from {und_s} to {und_l} of {conv['rows']}; "
                f"robust channels from {rob_s} to {rob_l}. At cap {cl['steps']} the longest FZ stopped at step "
                f"{max(int(r['max']) for r in conv['steps_long'])}."]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("convergence", help="A: default cap vs a long cap, same seeds")
    c.add_argument("--default", required=True, help="scan folder at the short cap (e.g. 512)")
    c.add_argument("--long", required=True, help="scan folder at the long cap (2560)")
    c.add_argument("--json", required=True)
    g = sub.add_parser("agreement", help="B: two independent multi-seed runs")
    g.add_argument("--first", required=True)
    g.add_argument("--second", required=True)
    g.add_argument("--json", required=True)
    m = sub.add_parser("markdown", help="the summary of the JSON files")
    m.add_argument("--convergence", action="append", default=[], help="a convergence JSON (repeatable)")
    m.add_argument("--agreement", action="append", default=[], help="an agreement JSON (repeatable)")
    m.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.what == "convergence":
        _write(args.json, {**_meta(argv), **convergence(args.default, args.long)})
    elif args.what == "agreement":
        _write(args.json, {**_meta(argv), **agreement(args.first, args.second)})
    else:
        if not args.convergence and not args.agreement:
            parser.error("give --convergence and/or --agreement")
        text = markdown([json.loads(Path(f).read_text()) for f in args.convergence],
                        [json.loads(Path(f).read_text()) for f in args.agreement])
        from rsi_plugin.core.atomic import atomic_write

        atomic_write(Path(args.out), lambda tmp: Path(tmp).write_text(text))
        print("wrote", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
