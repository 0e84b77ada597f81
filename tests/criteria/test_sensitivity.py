"""The sensitivity of a finished scan's verdicts to analysis choices (criteria/sensitivity.py and
`rsi sensitivity`): the re-evaluated baseline is the scan's own, the zoom-centre alternative is
the scan about the image centre, the PNG alternative reads the 8-bit PNGs, flips are counted as
by hand, and no FZ is ever rendered again."""

from __future__ import annotations

import io

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from rsi_plugin.cli import main
from rsi_plugin.criteria.captum import ScaleInvariance
from rsi_plugin.criteria.channel_scan import ScanConfig, read_table, scan
from rsi_plugin.criteria.geometry import receptive_field_center, zoom_transform
from rsi_plugin.criteria.sensitivity import (
    SENSITIVITY_COLUMNS,
    SUMMARY_COLUMNS,
    choice_sensitivity,
    read_cached_fzs,
    sensitivity_summary,
    write_sensitivity,
)
from rsi_plugin.core.images import normalize
from rsi_plugin.outputs.summary import sensitivity_by_block
from rsi_plugin.errors import ConfigError, MissingFileError, UnknownNameError
from rsi_plugin.featureviz import optimize as featureviz

from test_criteria import PlantedNet
from test_seeds import PLANTED_CONVERGED, biased_planted_net

#: Pre of channel 5 gets this bias: its FZ-driven Eq. 1 value then lies below 0 with S about
#: the receptive-field centre (16, 16) and above 0 about the image centre (15.5, 15.5) (about
#: -2 vs +3), so the zoom centre flips its Eq. 1 outcome (its Eq. 2 fails either way)
BETWEEN_CENTRES_BIAS = -33.5


@pytest.fixture(scope="module")
def planted() -> torch.nn.Module:
    net = biased_planted_net()
    with torch.no_grad():
        net.layer1[0].bn2.bias[5] = BETWEEN_CENTRES_BIAS
    return net


@pytest.fixture(scope="module")
def scanned(planted, tmp_path_factory) -> tuple[pd.DataFrame, ScanConfig, Path]:
    cache = tmp_path_factory.mktemp("sensitivity_fz")
    config = ScanConfig(featureviz=PLANTED_CONVERGED, cache_dir=cache)
    return scan(planted, "1.0", config, progress=False), config, cache


@pytest.fixture()
def no_rendering(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("an FZ was rendered")

    monkeypatch.setattr(featureviz, "_optimize_stream", refuse)
    monkeypatch.setattr(featureviz, "render", refuse)


def test_baseline_is_the_scans_own_evaluation_and_nothing_is_rendered(planted, scanned, no_rendering):
    table, config, _ = scanned
    frame = choice_sensitivity(planted, table, config)
    assert list(frame.columns) == list(SENSITIVITY_COLUMNS)
    assert frame["choice"].tolist() == ["zoom_center"] * 6 + ["png"] * 6
    assert set(table["verdict"]) == {"pass", "fail", "undetermined"}  # every kind of row is exercised
    for choice in ("zoom_center", "png"):
        part = frame[frame["choice"] == choice].reset_index(drop=True)
        assert part["channel"].tolist() == table["channel"].tolist()
        assert part["verdict_base"].tolist() == table["verdict"].tolist()
        assert part["scan_verdict"].tolist() == table["verdict"].tolist() and part["reproduced"].all()
        for value in ("pre_in", "pre_scaled", "post_in", "post_pre", "eq1", "eq2"):
            assert np.array_equal(part[f"{value}_base"].to_numpy(), table[value].to_numpy()), value
        assert part["in_status"].tolist() == table["in_status"].tolist()
        assert part["pre_status"].tolist() == table["pre_status"].tolist()
        undetermined = part["verdict_base"] == "undetermined"
        assert (part.loc[undetermined, "verdict_alt"] == "undetermined").all()  # a bad FZ stays undetermined
    assert frame.attrs["choices"] == ["zoom_center", "png"] and frame.attrs["skipped"] == {}


def test_zoom_center_alternative_is_the_scan_about_the_image_centre(planted, scanned, no_rendering):
    table, config, _ = scanned
    y, x = (float(v) for v in table["zoom_center"].iloc[0].split(","))
    assert abs(y - 15.5) >= 0.25 and abs(x - 15.5) >= 0.25  # the even-sized map's centre neuron is off-centre
    reference = scan(planted, "1.0", dataclasses.replace(config, zoom_center="image"), progress=False)
    assert (reference["zoom_center"] == "image").all() and not reference["fz_computed"].any()

    frame = choice_sensitivity(planted, table, config, choices=["zoom_center"])
    assert set(frame["choice"]) == {"zoom_center"} and (frame["alternative"] == "image").all()
    for value in ("pre_scaled", "eq1", "eq2", "verdict"):
        assert frame[f"{value}_alt"].tolist() == reference[value].tolist(), value
    determined = table["verdict"] != "undetermined"
    moved = frame["pre_scaled_alt"].to_numpy() != frame["pre_scaled_base"].to_numpy()
    assert moved[determined.to_numpy()].all()  # S about another point reads other values

    # the counts by hand, from the two scans
    summary = sensitivity_summary(frame).set_index("block").loc["1.0"]
    eq1_flips = int((determined & (table["eq1"] != reference["eq1"])).sum())
    assert eq1_flips >= 1 and bool(reference.loc[table.channel == 5, "eq1"].iloc[0])  # channel 5, planted between
    assert summary["eq1_flips"] == eq1_flips and summary["eq2_flips"] == 0  # Eq. 2 does not read S
    assert summary["verdict_flips"] == int((table["verdict"] != reference["verdict"]).sum())
    assert summary["pass_to_fail"] == int(((table["verdict"] == "pass") & (reference["verdict"] == "fail")).sum())
    assert summary["fail_to_pass"] == int(((table["verdict"] == "fail") & (reference["verdict"] == "pass")).sum())
    assert summary["rows"] == 6 and summary["determined"] == int(determined.sum())
    row = frame[frame["channel"] == 5].iloc[0]
    assert row["eq1_flipped"] and row["pre_scaled_alt"] > max(row["pre_in_alt"], 0) >= row["pre_scaled_base"]


def test_png_alternative_reads_the_8bit_pngs(planted, scanned, tmp_path, no_rendering):
    table, config, cache = scanned
    groups = read_cached_fzs(planted, table)
    fzs = groups[("1.0", 0)]
    for role in ("in", "pre"):
        quantised = (fzs[role].images.clamp(0, 1) * 255).round() / 255
        assert torch.equal(fzs[role].png, quantised)
        assert not torch.equal(fzs[role].png, fzs[role].images)
    # the PNG rows are the criteria on those quantised images, through S about the rf centre
    center = receptive_field_center(planted, "1.0", "pre", image_size=32)
    expected = ScaleInvariance(planted, "1.0").evaluate(
        (normalize((fzs["in"].images.clamp(0, 1) * 255).round() / 255, planted),
         normalize((fzs["pre"].images.clamp(0, 1) * 255).round() / 255, planted)),
        channels=list(range(6)), transform=zoom_transform(2.0, center), batch_size=config.batch_size).table()
    frame = choice_sensitivity(planted, table, config, choices=("png",))
    assert (frame["alternative"] == "png (8-bit)").all()
    for value in ("pre_in", "pre_scaled", "post_in", "post_pre"):
        assert np.allclose(frame[f"{value}_alt"], expected[value], rtol=1e-6, atol=1e-4), value

    # the PNG read is the record's own: a PNG swapped on disk (here blackened) does not match the
    # checksum its record holds, so the cache writes the record's PNG again before it is read
    copy = tmp_path / "fz"
    shutil.copytree(cache, copy)
    png = Path(copy).joinpath(*Path(table.loc[0, "in_fz_path"]).parts[-5:])
    original = png.read_bytes()
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(png)
    tampered = choice_sensitivity(planted, table, config, choices=("png",), cache_dir=copy)
    assert np.array_equal(tampered["post_in_alt"], frame["post_in_alt"])
    assert np.array_equal(tampered["post_in_base"], frame["post_in_base"])  # the float record is untouched
    assert np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(io.BytesIO(original))))


def test_summary_counts_on_constructed_rows(tmp_path):
    rows = pd.DataFrame([
        # block, choice, base, alt, eq1 base/alt, eq2 base/alt, reproduced
        ("2.1", "zoom_center", "pass", "fail", True, False, True, True, True),
        ("2.1", "zoom_center", "fail", "pass", True, True, False, True, True),
        ("2.1", "zoom_center", "pass", "pass", True, True, True, True, True),
        ("2.1", "zoom_center", "undetermined", "undetermined", False, True, True, True, True),  # not counted
        ("2.1", "zoom_center", "fail", "fail", True, False, True, False, False),
        ("3.1", "zoom_center", "fail", "fail", False, False, False, False, True),
        ("2.1", "png", "pass", "pass", True, True, True, True, True),
    ], columns=["block", "choice", "verdict_base", "verdict_alt", "eq1_base", "eq1_alt", "eq2_base", "eq2_alt",
                "reproduced"])
    expected = pd.DataFrame([
        ("2.1", "zoom_center", 5, 4, 2, 1, 1, 2, 2, 2, 2, 1),
        ("3.1", "zoom_center", 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
        ("2.1", "png", 1, 1, 0, 0, 0, 0, 0, 1, 1, 0),
        ("all", "zoom_center", 6, 5, 2, 1, 1, 2, 2, 2, 2, 1),
        ("all", "png", 1, 1, 0, 0, 0, 0, 0, 1, 1, 0),
    ], columns=list(SUMMARY_COLUMNS))
    pd.testing.assert_frame_equal(sensitivity_summary(rows), expected)
    path = tmp_path / "rows.csv"
    rows.to_csv(path, index=False)  # read back from a CSV (strings "True"/"False", block as str)
    pd.testing.assert_frame_equal(sensitivity_summary(pd.read_csv(path, dtype={"block": str})), expected)
    assert sensitivity_by_block(expected) == {
        "2.1": {"zoom_center": {"rows": 5, "verdict_flips": 2, "eq1_flips": 2, "eq2_flips": 2},
                "png": {"rows": 1, "verdict_flips": 0, "eq1_flips": 0, "eq2_flips": 0}},
        "3.1": {"zoom_center": {"rows": 1, "verdict_flips": 0, "eq1_flips": 0, "eq2_flips": 0}}}


def test_missing_records_wrong_model_and_bad_settings_are_refused(planted, scanned, tmp_path, no_rendering):
    table, config, cache = scanned
    copy = tmp_path / "fz"
    shutil.copytree(cache, copy)
    for column in ("in_fz_path", "pre_fz_path"):
        Path(copy).joinpath(*Path(table.loc[3, column]).parts[-5:]).with_suffix(".pt").unlink()
    with pytest.raises(MissingFileError, match=r"2 of 12 FZ records .* missing .* rerun the scan"):
        choice_sensitivity(planted, table, config, cache_dir=copy)
    with pytest.raises(MissingFileError, match="without a cache"):
        choice_sensitivity(planted, table.assign(in_fz_path=None, pre_fz_path=None), config)
    other = PlantedNet()  # the planted biases left out: another fingerprint
    with pytest.raises(ConfigError, match="fingerprint"):
        choice_sensitivity(other, table, config)
    with pytest.raises(UnknownNameError, match="zoom_center, png"):
        choice_sensitivity(planted, table, config, choices=("tolerance",))
    with pytest.raises(ConfigError, match="tolerance"):
        choice_sensitivity(planted, table, dataclasses.replace(config, tolerance=2.0))
    with pytest.raises(ConfigError, match="zoom"):
        choice_sensitivity(planted, table, dataclasses.replace(config, zoom_center="image"))
    written = write_sensitivity(planted, table, config, tmp_path / "out")
    assert [p.name for p in written] == ["sensitivity.csv", "sensitivity_summary.csv"]
    assert list(pd.read_csv(written[1]).columns) == list(SUMMARY_COLUMNS)


def test_cli_writes_both_files_reads_a_demo_folder_and_refuses_without_a_cache(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    folder = tmp_path / "scan_out"
    assert main(["scan", "--model", "tiny", "--blocks", "4.0", "--channels", "0", "1", "--steps", "4",
                 "--image-size", "32", "--seeds", "2", "--no-progress", "--out", str(folder)]) == 0
    table = read_table(folder / "scan.csv")
    capsys.readouterr()

    def refuse(*args, **kwargs):
        raise AssertionError("an FZ was rendered")

    monkeypatch.setattr(featureviz, "_optimize_stream", refuse)
    assert main(["sensitivity", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "zoom_center" in out and "wrote" in out
    frame = pd.read_csv(folder / "sensitivity.csv", dtype={"block": str})
    assert list(frame.columns) == list(SENSITIVITY_COLUMNS) and len(frame) == 2 * 2 * 2  # channels x seeds x choices
    assert frame["reproduced"].all() and sorted(set(frame["seed"])) == [0, 1]
    base = frame[frame["choice"] == "png"].reset_index(drop=True)
    assert base["verdict_base"].tolist() == table["verdict"].tolist()
    summary = pd.read_csv(folder / "sensitivity_summary.csv", dtype={"block": str})
    assert summary["block"].tolist() == ["4.0", "4.0", "all", "all"] and (summary["rows"] == 4).all()

    # a demo run folder: the scan moved to RUN/scan (the table's paths are re-rooted), the model
    # from settings.json
    run.mkdir()
    shutil.move(str(folder), str(run / "scan"))
    (run / "settings.json").write_text(json.dumps({"model": "tiny", "weights": None, "seed": 0}))
    (run / "scan" / "sensitivity.csv").unlink()
    assert main(["sensitivity", str(run), "--choices", "png"]) == 0
    again = pd.read_csv(run / "scan" / "sensitivity.csv", dtype={"block": str})
    assert set(again["choice"]) == {"png"} and again["reproduced"].all()
    capsys.readouterr()

    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "scan" / "scan.csv", bare / "scan.csv")
    assert main(["sensitivity", str(bare)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no feature-visualisation cache" in err and "rerun the scan" in err
    assert main(["sensitivity", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err
    record = next((run / "scan" / "fz").rglob("c00001.pt"))
    record.unlink()
    assert main(["sensitivity", str(run)]) == 2
    assert "1 of 8 FZ records" in capsys.readouterr().err


def test_a_second_write_into_the_folder_keeps_the_other_blocks_rows(planted, scanned, tmp_path, no_rendering):
    table, config, _ = scanned
    out = tmp_path / "scan"
    out.mkdir()
    ours = choice_sensitivity(planted, table, config)
    earlier = ours.assign(block="9.9")  # the rows an earlier run wrote for another block
    earlier.to_csv(out / "sensitivity.csv", index=False)

    for _ in range(2):  # a rerun of the same block replaces its rows, never duplicates them
        write_sensitivity(planted, table, config, out)
        rows = pd.read_csv(out / "sensitivity.csv", dtype={"block": str})
        assert rows["block"].tolist() == ["1.0"] * len(ours) + ["9.9"] * len(ours)
        summary = pd.read_csv(out / "sensitivity_summary.csv", dtype={"block": str})
        every = summary[summary["block"] == "all"].set_index("choice")["rows"]
        assert (every == 2 * len(table)).all() and set(summary["block"]) == {"1.0", "9.9", "all"}
    write_sensitivity(planted, table, config, out, existing="replace")
    assert set(pd.read_csv(out / "sensitivity.csv", dtype={"block": str})["block"]) == {"1.0"}
    with pytest.raises(ConfigError, match="'merge' or 'replace'"):
        write_sensitivity(planted, table, config, out, existing="append")
