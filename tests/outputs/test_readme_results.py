"""Numbers in the README come from a run: the results summary of a run directory, its
Markdown, the README block between the markers, and the check that they agree."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from rsi_plugin.testing.models import random_data, small_resnet  # noqa: F401

from rsi_plugin.cli import main
from rsi_plugin.outputs.summary import (
    END,
    START,
    check_readme,
    marker_lines,
    read_summary,
    render_markdown,
    summarize_run,
    update_readme,
    write_summary,
)
from rsi_plugin.ablation.experiment import SweepConfig, sweep

REPO = Path(__file__).resolve().parents[2]
#: the results file a demo run commits; the README's generated block must render it exactly
COMMITTED = REPO / "docs" / "results" / "demo-summary.json"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """RUN/scan/{scan.csv, summary.csv} (a seeded scan's per-block summary, written by hand)
    and RUN/ablation/3.1 (a real sweep, tolerance auto, 5 null sets)."""
    root = tmp_path_factory.mktemp("run")
    (root / "scan").mkdir()
    rows = [{"source": "fz", "block": b, "channel": c, "seed": s, "passes": c < k, "verdict": "pass" if c < k else
             ("undetermined" if c == 7 else "fail")} for b, k in (("3.0", 2), ("3.1", 4)) for c in range(8)
            for s in (0, 1)]
    pd.DataFrame(rows).to_csv(root / "scan" / "scan.csv", index=False)
    pd.DataFrame([
        {"source": "fz", "block": "3.0", "channels": 8, "seeds": 2, "passing": 1, "robust": 1, "any_seed": 2,
         "undetermined": 1, "jaccard_mean": 0.5, "jaccard_min": 0.5, "jaccard_max": 0.5},
        {"source": "fz", "block": "3.1", "channels": 8, "seeds": 2, "passing": 4, "robust": 4, "any_seed": 4,
         "undetermined": 1, "jaccard_mean": 1.0, "jaccard_min": 1.0, "jaccard_max": 1.0},
    ]).to_csv(root / "scan" / "summary.csv", index=False)
    sweep(small_resnet(), random_data(16, seed=4), "3.1", [0, 1, 2, 3],
          SweepConfig(scales=(0.0, 0.3, 0.5), trials=3, tolerance="auto", max_draws=6, null_sets=5, batch_size=16),
          out_dir=root / "ablation" / "3.1", progress=False)
    return root


def test_summary_holds_the_files_numbers(run):
    summary = summarize_run(run)
    assert json.loads(json.dumps(summary)) == summary  # JSON-ready
    blocks = {b["block"]: b for b in summary["blocks"]}
    assert blocks["3.0"]["robust"] == 1 and blocks["3.0"]["any_seed"] == 2 and blocks["3.1"]["jaccard_mean"] == 1.0
    (ablation,) = summary["ablations"]
    eq3 = pd.read_csv(run / "ablation" / "3.1" / "eq3.csv")
    assert ablation["trials_asked"] == 3 and ablation["trials_kept"] == int(eq3["trials_kept"].iloc[0])
    draws = pd.read_csv(run / "ablation" / "3.1" / "draws.csv")
    assert ablation["trials_kept"] == int(draws["kept"].sum()) and ablation["draws"] == len(draws)
    for got, row in zip(ablation["scales"], eq3.itertuples()):
        assert got["scale"] == row.scale and got["n_null"] == row.n_null == 5
        assert got["ratio_mean"] == pytest.approx(row.ratio_mean, rel=1e-5, nan_ok=True)
    assert ablation["verdict"].startswith("Block 3.1")
    text = render_markdown(summary)
    assert "| robust / channels | 1/8 | 4/8 |" in text and "| passing in any seed | 2 | 4 |" in text
    assert "| seed Jaccard, mean (range) | 0.50 (0.50–0.50) | 1.00 (1.00–1.00) |" in text
    kept = ablation["trials_kept"]
    assert f"- block 3.1 (4 channels): {kept} of 3 kept from {len(draws)} draws" in text
    first = next(s for s in ablation["scales"] if s["scale"] == 0.3)
    assert f"{first['ratio_mean']:.3f}" in text and ablation["verdict"] in text


def test_a_run_that_ablated_nothing_says_so(run):
    summary = summarize_run(run)
    without = {**summary, "ablations": []}
    assert "No block was ablated" not in render_markdown(without)  # not a demo: nothing known about the choice
    said = render_markdown({**without, "settings": {**summary["settings"], "ablation_blocks_chosen": [],
                                                    "channel_set": "robust"}})
    assert "No block was ablated: no scanned block has a channel in the `robust` set" in said
    assert "No block was ablated" not in render_markdown({**summary, "settings": {
        **summary["settings"], "ablation_blocks_chosen": ["3.1"]}})


def _readme(path: Path) -> Path:
    path.write_text(f"# title\n\nintro\n\n{START}\nold numbers 0.998 ± 0.001\n{END}\n\n## next\nrest\n")
    return path


def test_readme_block_is_rewritten_from_the_file_and_checked(run, tmp_path):
    results = write_summary(summarize_run(run), tmp_path / "docs" / "results" / "demo-summary.json")
    readme = _readme(tmp_path / "README.md")
    assert check_readme(readme, results)  # the hand-written block disagrees
    update_readme(readme, results)
    text = readme.read_text()
    assert text.startswith("# title\n\nintro\n\n") and text.endswith("\n\n## next\nrest\n")
    assert render_markdown(read_summary(results)) in text and "0.998" not in text
    assert check_readme(readme, results) == []
    # a hand edit of a number in the README fails the check, naming the line
    edited = text.replace("| robust / channels | 1/8 |", "| robust / channels | 2/8 |")
    readme.write_text(edited)
    diff = check_readme(readme, results)
    assert "+| robust / channels | 2/8 | 4/8 |" in diff and "-| robust / channels | 1/8 | 4/8 |" in diff
    # and so does a results file that changed without regenerating the README
    readme.write_text(text)
    data = json.loads(results.read_text())
    data["ablations"][0]["trials_kept"] = 99
    results.write_text(json.dumps(data))
    assert any("99 of 3 kept" in line for line in check_readme(readme, results))


def test_readme_errors(tmp_path, run):
    results = write_summary(summarize_run(run), tmp_path / "s.json")
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="exactly one"):
        check_readme(readme, results)
    readme.write_text(f"{START}\n{START}\n{END}\n")
    with pytest.raises(ValueError, match="exactly one"):
        update_readme(readme, results)
    readme.write_text(f"prose quoting `{START}` and `{END}` is not a block\n")
    assert marker_lines(readme.read_text()) == ([], [])
    with pytest.raises(ValueError, match="exactly one"):
        check_readme(readme, results)
    with pytest.raises(FileNotFoundError):
        read_summary(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="format"):
        read_summary(tmp_path / "bad.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="nothing to summarise"):
        summarize_run(tmp_path / "empty")


def test_cli_report_markdown_summary_and_readme(run, tmp_path, capsys):
    out = tmp_path / "docs" / "demo-summary.json"
    readme = _readme(tmp_path / "README.md")
    assert main(["report", str(run), "--markdown", "--summary-json", str(out), "--update-readme", str(readme)]) == 0
    printed = capsys.readouterr().out
    assert "| robust / channels | 1/8 | 4/8 |" in printed
    assert read_summary(out) == summarize_run(run) and check_readme(readme, out) == []


def test_committed_readme_agrees_with_the_committed_results():
    """Binding once the demo's results file is committed or the README has the markers:
    then both must exist and agree (regenerate with ``rsi report RUN --summary-json
    docs/results/demo-summary.json --update-readme README.md``)."""
    readme = REPO / "README.md"
    starts, ends = marker_lines(readme.read_text())
    marked = bool(starts or ends)
    if COMMITTED.is_file() or marked:
        assert COMMITTED.is_file(), f"README.md has the results markers but {COMMITTED} is missing"
        assert marked, f"{COMMITTED} exists but README.md has no {START} ... {END} block"
        assert check_readme(readme, COMMITTED) == []
    else:  # before the first committed run: no generated block may claim to come from one
        assert not starts and not ends


def test_replace_readme_block_rewrites_only_its_named_block(tmp_path):
    from rsi_plugin.errors import RSIError
    from rsi_plugin.outputs.summary import replace_readme_block

    readme = tmp_path / "README.md"
    readme.write_text("intro quoting `<!-- t:start -->` in prose\n<!-- t:start -->\nold\n<!-- t:end -->\n"
                      "<!-- u:start -->\nother\n<!-- u:end -->\n")
    replace_readme_block(readme, "t", "new\n")
    assert readme.read_text() == ("intro quoting `<!-- t:start -->` in prose\n<!-- t:start -->\nnew\n<!-- t:end -->\n"
                                  "<!-- u:start -->\nother\n<!-- u:end -->\n")
    with pytest.raises(RSIError, match="<!-- v:start -->"):
        replace_readme_block(readme, "v", "x\n")
