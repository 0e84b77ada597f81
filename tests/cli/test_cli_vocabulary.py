"""One vocabulary across subcommands (issue 21 item 18): each renamed flag works, each old
spelling still works and warns with the new name, ``-v`` after the subcommand."""

from __future__ import annotations

import argparse
import logging

import pytest

from rsi_plugin.cli import build_parser, main

REQUIRED = {"scan": ["--out", "o"], "ablate": ["--out", "o", "--block", "2.1", "--channels", "1"],
            "featureviz": ["--out", "o", "--block", "2.1"], "sensitivity": ["d"], "report": ["d"]}


def parse(command: str, *argv: str) -> argparse.Namespace:
    return build_parser([command]).parse_args([command, *argv, *REQUIRED.get(command, [])])


def parse_deprecated(command: str, new: str, *argv: str) -> argparse.Namespace:
    with pytest.warns(FutureWarning, match=f"{argv[0]} is deprecated.*use {new}"):
        return parse(command, *argv)


# --------------------------------------------------------------------------- screening slack


@pytest.mark.parametrize("command, default", [("demo", "auto"), ("ablate", 0.0)])
def test_screening_slack_is_screen_tolerance(command, default):
    assert parse(command).screen_tolerance == default
    assert parse(command, "--screen-tolerance", "0.01").screen_tolerance == 0.01
    assert parse(command, "--screen-tolerance", "auto").screen_tolerance == "auto"
    assert parse_deprecated(command, "--screen-tolerance", "--tolerance", "0.01").screen_tolerance == 0.01
    assert not hasattr(parse(command), "tolerance")


@pytest.mark.parametrize("command", ["demo", "ablate"])
@pytest.mark.parametrize("flag", ["--tolerance", "--screen-tolerance"])
def test_an_eq2_like_tolerance_is_refused_in_demo_and_ablate(command, flag, capsys):
    with pytest.warns(FutureWarning) if flag == "--tolerance" else _nothing(), pytest.raises(SystemExit) as exit_:
        parse(command, flag, "1.5")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "keeps every random set" in err and "rsi scan --tolerance" in err


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_scan_tolerance_is_still_eq2_t():
    assert parse("scan", "--tolerance", "1.5").tolerance == 1.5


# --------------------------------------------------------------------------- threads, device


@pytest.mark.parametrize("command", ["featureviz", "ablate", "inspect", "scan", "demo"])
def test_threads_everywhere(command):
    assert parse(command).threads is None
    assert parse(command, "--threads", "1").threads == 1


def test_inspect_sets_the_threads(monkeypatch, capsys):
    import torch

    asked = []
    monkeypatch.setattr(torch, "set_num_threads", asked.append)
    assert main(["inspect", "--threads", "1"]) == 0
    assert asked == [1]


def _demo_config(monkeypatch, *argv):
    import rsi_plugin.apps.demo as demo

    seen = {}

    def fake(config, progress=True):
        seen["config"] = config
        raise KeyboardInterrupt  # stop before any work

    monkeypatch.setattr(demo, "run_demo", fake)
    assert main(["demo", "--out", "unused", *argv]) == 130
    return seen["config"]


def test_demo_device_is_passed_on(monkeypatch):
    assert parse("demo").device is None  # cpu in one process; under torchrun with GPUs, GPU LOCAL_RANK
    assert _demo_config(monkeypatch).device == "cpu"
    assert _demo_config(monkeypatch, "--device", "cuda").device == "cuda"


# --------------------------------------------------------------------------- batch names


def test_featureviz_channels_per_batch():
    assert parse("featureviz").channels_per_batch == 32
    assert parse("featureviz", "--channels-per-batch", "8").channels_per_batch == 8
    assert parse_deprecated("featureviz", "--channels-per-batch", "--batch", "8").channels_per_batch == 8


def test_bench_batch_size():
    assert parse("bench").batch_size == [1, 8, 32]
    assert parse("bench", "--batch-size", "1", "4").batch_size == [1, 4]
    assert parse_deprecated("bench", "--batch-size", "--batch", "2", "4").batch_size == [2, 4]


# --------------------------------------------------------------------------- seeds, adaptive, model


def test_demo_seeds_take_a_count_or_a_list(monkeypatch):
    assert _demo_config(monkeypatch, "--seeds", "2").seeds == 2
    assert tuple(_demo_config(monkeypatch, "--seeds", "0", "4").seeds) == (0, 4)


def test_demo_config_with_a_seed_list_scans_those_seeds():
    from rsi_plugin.apps.demo import DemoConfig, demo_seeds

    assert demo_seeds(DemoConfig(seeds=2, seed=5).resolved()) == (5, 6)
    assert demo_seeds(DemoConfig(seeds=(0, 4)).resolved()) == (0, 4)
    with pytest.raises(ValueError, match="seeds"):
        DemoConfig(seeds=()).resolved()


@pytest.mark.parametrize("command, default", [("scan", False), ("demo", True)])
def test_adaptive_both_ways_with_each_commands_default(command, default):
    assert parse(command).adaptive is default
    assert parse(command, "--adaptive").adaptive is True
    assert parse(command, "--no-adaptive").adaptive is False


def test_inspect_defaults_to_tiny_like_every_other_command():
    for command in ("inspect", "scan", "ablate", "featureviz", "demo"):
        assert parse(command).model == "tiny", command


# --------------------------------------------------------------------------- -v, --limit


@pytest.mark.parametrize("argv", [["-v", "inspect"], ["inspect", "-v"], ["inspect", "--verbose"]])
def test_verbose_before_or_after_the_subcommand(argv):
    assert build_parser(argv).parse_args(argv).verbose is True
    assert build_parser(["inspect"]).parse_args(["inspect"]).verbose is False


def test_verbose_after_the_subcommand_logs_debug(monkeypatch, capsys):
    levels = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: levels.append(kw["level"]))
    assert main(["inspect", "-v"]) == 0
    assert levels == [logging.DEBUG]


def test_ablate_images_evenly_spaced_and_scan_limit_first():
    assert parse("ablate", "--images", "8").images == 8
    assert parse_deprecated("ablate", "--images", "--limit", "8").images == 8
    assert parse("scan", "--limit", "8").limit == 8  # scan: the first N, unchanged
