r"""The method card: per block, one mark per check of whether a finding can be believed.

A count of passing channels, or an Eq. 3 ratio, is evidence only against controls run through
the same code. The card puts those controls first (the first screen of ``report.html`` and of
``rsi report --markdown``): for each scanned block one line per check, each marked ``pass``,
``inconclusive`` or ``fail`` by the rule stated once in :data:`RULES`.

======================  ===========================================================================
check                   what it asks
======================  ===========================================================================
``untrained``           does the trained network pass more channels than untrained copies of it
                        (model randomisation, :mod:`rsi_plugin.criteria.controls`)?
``planted``             can the instrument see a known answer (a model with scale-invariant
                        channels planted by construction, :mod:`rsi_plugin.zoo.planted`)?
                        One result per run, shown on every block.
``seeds``               do the passing sets agree between FZ seeds?
``eq3``                 is the Eq. 3 scale-specific deficit distinguishable from a null of random
                        same-size sets, and how large a deficit could the run have detected?
``choices``             do the verdicts survive the analysis choices that only change evaluation
                        (S about the image centre instead of the receptive-field centre, the
                        8-bit PNG instead of the float image; :mod:`rsi_plugin.criteria.sensitivity`)?
======================  ===========================================================================

The card reads only the results summary (:func:`rsi_plugin.outputs.summary.summarize_run`), so
a README block generated from a summary file shows exactly the card of the run that wrote it.
Keys it reads, each optional (a check whose input is missing is ``inconclusive``, "not run"):

* ``blocks[i]["controls"]``: ``trained`` (the trained count, on the seeds compared), ``counts``
  (one per untrained copy), ``p`` (the one-sided test's p-value), ``verdict`` (text), ``seeds``
  (the seeds compared, e.g. ``"0"``);
* ``blocks[i]["robust"]``, ``any_seed``, ``seeds``, ``jaccard_mean``;
* ``blocks[i]["sensitivity"]``: per alternative (``"zoom_center"``, ``"png"``) a dict with
  ``rows`` and ``verdict_flips``;
* ``ablations[j]``: ``block``, ``trials_kept``, ``scales`` (``p_null``, ``n_null``,
  ``detectable_deficit``, ``deficit``, ``null_deficit_median``);
* ``planted``: ``recall``, ``false_positive_rate``, ``seeds``, ``control_planted_p`` (planted
  channels robust in the planted model vs in its untrained copies, one-sided exact test; or,
  without it, ``control_passing``: planted channels robust in an untrained copy), ``eq3_detected``
  (:mod:`rsi_plugin.apps.planted`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd

__all__ = ["Check", "CHECKS", "RULES", "MARKS", "method_card", "row_label", "card_frame", "card_markdown", "card_reading",
           "ALPHA", "STABLE_JACCARD", "UNSTABLE_JACCARD", "FLIP_PASS", "FLIP_FAIL", "RECALL_MIN", "FALSE_POSITIVE_MAX"]

#: family-wise level of the tests the card reads (Bonferroni over the scaled conditions for Eq. 3)
ALPHA = 0.05
#: seed Jaccard at or above which the passing sets are called stable
STABLE_JACCARD = 0.8
#: seed Jaccard below which they are called unstable
UNSTABLE_JACCARD = 0.5
#: share of a block's verdicts an analysis choice may flip and still pass
FLIP_PASS = 0.05
#: share above which the block fails the check
FLIP_FAIL = 0.20
#: the planted control must recover at least this share of the planted channels ...
RECALL_MIN = 0.9
#: ... and pass at most this share of the others
FALSE_POSITIVE_MAX = 0.05

MARKS: tuple[str, ...] = ("pass", "inconclusive", "fail")

CHECKS: dict[str, str] = {
    "untrained": "trained vs untrained",
    "planted": "planted recovery",
    "seeds": "seed stability",
    "eq3": "Eq. 3 vs null",
    "choices": "analysis choices",
}
"""Check key -> its column title."""

RULES: dict[str, str] = {
    "untrained": ("pass: the trained network's count of robust channels, on the seeds the copies were rendered "
                  "with, exceeds every untrained copy's and the one-sided exact "
                  f"test over channels (each counted once) gives p < {ALPHA:g}; fail: some untrained copy passes as "
                  "many channels or more; inconclusive: more than every copy but the test does not agree, or no "
                  "untrained copy was scanned."),
    "planted": (f"pass: on the planted model the scan recovers at least {RECALL_MIN:.0%} of the planted channels, "
                f"passes at most {FALSE_POSITIVE_MAX:.0%} of the others, the planted channels are robust in it more "
                f"often than in its untrained copies (one-sided exact test over channels, p < {ALPHA:g}), and (when run) "
                "its Eq. 3 positive control is detected; fail: any of these is missed; "
                "inconclusive: the planted control was not run. One result per run (it tests the instrument)."),
    "seeds": (f"pass: the block has a robust channel and the passing sets of the seeds agree (mean Jaccard >= "
              f"{STABLE_JACCARD:g}); fail: mean Jaccard < {UNSTABLE_JACCARD:g}; inconclusive: between, one seed "
              "only, or no channel passes in any seed (nothing to compare)."),
    "eq3": (f"pass: the scale-specific deficit is distinguishable from the null of random same-size sets at some "
            f"scale (p_null below {ALPHA:g} after Bonferroni over scales); fail: it is not, and the run could have "
            "detected a deficit of the size stated; inconclusive: the block was not ablated, fewer than two random "
            "sets were kept, or the null has too few distinct sets to detect any deficit."),
    "choices": (f"pass: every alternative evaluation flips at most {FLIP_PASS:.0%} of the block's verdicts; fail: "
                f"one flips more than {FLIP_FAIL:.0%}; inconclusive: between, or not computed."),
}
"""The rule behind each mark, stated once."""


@dataclass(frozen=True)
class Check:
    """One mark of the card.

    Attributes:
        block (str): the block.
        check (str): a key of :data:`CHECKS`.
        mark (str): ``"pass"``, ``"inconclusive"`` or ``"fail"``.
        detail (str): the numbers behind the mark, in a few words.
    """

    block: str
    check: str
    mark: str
    detail: str


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def _untrained(block: Mapping[str, Any]) -> tuple[str, str]:
    controls = block.get("controls")
    if not controls or not controls.get("counts"):
        return "inconclusive", "not run"
    trained, counts, p = controls.get("trained"), list(controls["counts"]), controls.get("p")
    if trained is None:
        return "inconclusive", "no trained count"
    seeds = controls.get("seeds")
    on = "" if seeds in (None, "") else f" on seed{'s' if len(str(seeds).split()) > 1 else ''} {seeds}"
    detail = f"{trained} vs {', '.join(str(c) for c in counts)}{on} (p {_num(p)})"
    if any(c is None for c in counts):
        return "inconclusive", detail + "; a copy did not finish"
    if trained <= max(counts):
        return "fail", detail
    if p is not None and p < ALPHA:
        return "pass", detail
    return "inconclusive", detail


def _planted(planted: Mapping[str, Any] | None) -> tuple[str, str]:
    if not planted:
        return "inconclusive", "not run"
    recall, fp = planted.get("recall"), planted.get("false_positive_rate")
    if recall is None or fp is None:
        return "inconclusive", "incomplete"
    parts = [f"recall {recall:.2f}", f"false pos. {fp:.2f}"]
    ok = recall >= RECALL_MIN and fp <= FALSE_POSITIVE_MAX
    if planted.get("control_planted_p") is not None:
        parts.append(f"planted > untrained p {_num(planted['control_planted_p'])}")
        ok = ok and planted["control_planted_p"] < ALPHA
    elif planted.get("control_passing") is not None:
        parts.append(f"{planted['control_passing']} in untrained")
        ok = ok and planted["control_passing"] == 0
    if planted.get("eq3_detected") is not None:
        parts.append("Eq. 3 " + ("detected" if planted["eq3_detected"] else "missed"))
        ok = ok and bool(planted["eq3_detected"])
    return ("pass" if ok else "fail"), ", ".join(parts)


def _seeds(block: Mapping[str, Any]) -> tuple[str, str]:
    seeds, jaccard = block.get("seeds"), block.get("jaccard_mean")
    robust, any_seed = block.get("robust"), block.get("any_seed")
    if seeds is not None and seeds < 2:
        return "inconclusive", "one seed"
    if jaccard is None or not any_seed:
        return "inconclusive", "no channel passes in any seed"
    detail = f"Jaccard {jaccard:.2f}, {robust} robust of {any_seed}"
    if jaccard < UNSTABLE_JACCARD:
        return "fail", detail
    if jaccard >= STABLE_JACCARD and robust:
        return "pass", detail
    return "inconclusive", detail


def _eq3(ablation: Mapping[str, Any] | None) -> tuple[str, str]:
    if ablation is None:
        return "inconclusive", "not ablated"
    scales = [s for s in ablation.get("scales") or [] if s.get("scale") not in (0, 0.0, None)]
    kept = ablation.get("trials_kept")
    if not scales:
        return "inconclusive", "no Eq. 3 table"
    m = len(scales)
    p = [s.get("p_null") for s in scales]
    if any(v is not None for v in p) and min(v for v in p if v is not None) * m < ALPHA:
        best = min((s for s in scales if s.get("p_null") is not None), key=lambda s: s["p_null"])
        return "pass", f"p_null {_num(best['p_null'])} at {100 * float(best['scale']):g} % (x{m} scales)"
    if kept is not None and kept < 2:
        return "inconclusive", f"{kept} random set(s) kept"
    smallest_p = min((v for v in p if v is not None), default=None)
    if not any("detectable_deficit" in s for s in scales):  # a summary from before the power analysis
        return "inconclusive", f"not distinguishable (min p_null {_num(smallest_p)}); power not computed"
    detectable = [s.get("detectable_deficit") for s in scales]
    finite = [d for d in detectable if d is not None]
    if not finite:
        if smallest_p is None:
            return "inconclusive", "no null drawn"
        n_null = max((s.get("n_null") or 0) for s in scales)
        return "inconclusive", f"null of {n_null} set(s) too small to detect any deficit"
    # the deficit is negative when the invariant set hurts more; the least negative detectable one
    # over scales is the smallest effect the run could have seen
    smallest = max(finite)
    return "fail", f"not distinguishable (min p_null {_num(smallest_p)}); detectable deficit <= {smallest:.3g}"


def _choices(block: Mapping[str, Any]) -> tuple[str, str]:
    sensitivity = block.get("sensitivity")
    if not sensitivity:
        return "inconclusive", "not computed"
    shares, parts = [], []
    for name, entry in sorted(sensitivity.items()):
        rows, flips = entry.get("rows"), entry.get("verdict_flips")
        if not rows or flips is None:
            continue
        shares.append(flips / rows)
        parts.append(f"{name} {flips}/{rows}")
    if not shares:
        return "inconclusive", "not computed"
    detail = "flips: " + ", ".join(parts)
    if max(shares) > FLIP_FAIL:
        return "fail", detail
    if max(shares) <= FLIP_PASS:
        return "pass", detail
    return "inconclusive", detail


def row_label(row: Mapping[str, Any]) -> str:
    """The name a summary row is shown under: its block, preceded by its scan folder when the
    run directory holds several scans (``"beta/scan 1.1"``; the row then has a ``"scan"`` key)."""
    block = str(row.get("block", "?"))
    return f"{row['scan']} {block}" if row.get("scan") else block


def method_card(summary: Mapping[str, Any]) -> list[Check]:
    r"""The card of a run: one :class:`Check` per (block, check).

    Args:
        summary (dict): a results summary (:func:`rsi_plugin.outputs.summary.summarize_run` or
            :func:`~rsi_plugin.outputs.summary.read_summary`); keys in the module docstring.

    Returns:
        list of :class:`Check`, blocks in the summary's order (ablated blocks that were not
        scanned appended), checks in the order of :data:`CHECKS`. With several scans the
        block of each check is :func:`row_label` (scan folder and block).
    """
    blocks = {row_label(b): b for b in summary.get("blocks") or []}
    ablations = {row_label(a): a for a in summary.get("ablations") or []}
    names = list(blocks) + [b for b in ablations if b not in blocks]
    planted = _planted(summary.get("planted"))
    card = []
    for name in names:
        block = blocks.get(name, {})
        marks = {"untrained": _untrained(block), "planted": planted, "seeds": _seeds(block),
                 "eq3": _eq3(ablations.get(name)), "choices": _choices(block)}
        card += [Check(name, key, *marks[key]) for key in CHECKS]
    return card


def card_frame(card: Sequence[Check]) -> pd.DataFrame:
    """The card as a blocks x checks frame of ``"mark: detail"`` cells (index ``block``)."""
    if not card:
        return pd.DataFrame(columns=list(CHECKS.values()))
    frame = pd.DataFrame([{"block": c.block, "check": CHECKS[c.check], "cell": f"{c.mark}: {c.detail}"} for c in card])
    frame = frame.pivot(index="block", columns="check", values="cell")
    order = list(dict.fromkeys(c.block for c in card))
    return frame.loc[order, [CHECKS[k] for k in CHECKS if CHECKS[k] in frame.columns]]


def card_reading(card: Sequence[Check]) -> str:
    r"""The card in one sentence per check: in how many blocks it passed, failed or was
    inconclusive (generated, so that a README's plain reading cannot drift from its run)."""
    blocks = list(dict.fromkeys(c.block for c in card))
    parts = []
    for key, title in CHECKS.items():
        marks = [c.mark for c in card if c.check == key]
        if key == "planted":
            parts.append(f"{title}: {marks[0] if marks else 'not run'} (one result for the run)")
            continue
        counts = {m: marks.count(m) for m in MARKS if marks.count(m)}
        parts.append(f"{title}: " + ", ".join(f"{m} in {n}" for m, n in counts.items()) + f" of {len(blocks)} blocks")
    return "In short — " + "; ".join(parts) + "."


def card_markdown(card: Sequence[Check]) -> str:
    """The card as a Markdown table, its reading in one line (:func:`card_reading`) and the
    rules, one line each (ends with a newline)."""
    if not card:
        return "No block was scanned or ablated: the method card is empty.\n"
    frame = card_frame(card)
    lines = ["| block | " + " | ".join(frame.columns) + " |", "|---|" + "---|" * len(frame.columns)]
    for block, row in frame.iterrows():
        cells = []
        for value in row:
            mark, _, detail = str(value).partition(": ")
            cells.append(f"**{mark}**: {detail}")
        lines.append(f"| {block} | " + " | ".join(cells) + " |")
    lines += ["", card_reading(card), "", "How each mark is given:", ""]
    lines += [f"- *{CHECKS[k]}* — {RULES[k]}" for k in CHECKS]
    return "\n".join(lines) + "\n"
