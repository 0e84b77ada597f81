"""A killed sweep, rerun, skips what it finished and ends with the uninterrupted table."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from rsi_plugin.testing.models import random_data, small_resnet  # noqa: F401

from rsi_plugin.ablation import SweepConfig, sweep

N, BATCH = 20, 5


class Counting(torch.utils.data.Dataset):
    """Items of ``(images, labels)``; raises KeyboardInterrupt at read number ``stop``."""

    def __init__(self, data, stop=None):
        self.images, self.labels = data
        self.stop, self.reads = stop, 0

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        self.reads += 1
        if self.stop is not None and self.reads == self.stop:
            raise KeyboardInterrupt
        return self.images[i], int(self.labels[i])


CONFIG = SweepConfig(scales=(0.0, 0.25, 0.5), trials=2, tolerance=0.0, max_draws=8, seed=2,
                     batch_size=BATCH, checkpoint_every=1, screen_batch=2, null_sets=3)


@pytest.fixture(scope="module")
def model():
    return small_resnet(seed=4)


@pytest.fixture(scope="module")
def data():
    return random_data(N, seed=5)


@pytest.fixture(scope="module")
def reference(model, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    dataset = Counting(data)
    result = sweep(model, dataset, "3.1", [1, 4, 6], CONFIG, out_dir=out, progress=False)
    return result, dataset.reads, out


# reads: 20 for the means, 20 per screening pass, 20 for the main pass
@pytest.mark.parametrize("stops", [[13], [33], [58], [33, 12], [44, 3, 12]])
def test_interrupted_sweep_resumes_to_the_same_table(model, data, reference, tmp_path, stops):
    expected, full_reads, expected_dir = reference
    assert full_reads >= 3 * N
    for stop in stops:
        dataset = Counting(data, stop=stop)
        with pytest.raises(KeyboardInterrupt):
            sweep(model, dataset, "3.1", [1, 4, 6], CONFIG, out_dir=tmp_path, progress=False)
    dataset = Counting(data)
    result = sweep(model, dataset, "3.1", [1, 4, 6], CONFIG, out_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(result.results, expected.results)
    pd.testing.assert_frame_equal(result.draws, expected.draws)
    pd.testing.assert_frame_equal(result.summary, expected.summary)
    assert torch.equal(result.means, expected.means)
    # finished work was not redone: once the means pass (not checkpointed inside) was
    # through, the last run read less than a whole sweep
    if stops[0] > N:
        assert dataset.reads < full_reads
    else:
        assert dataset.reads == full_reads
    # the files hold the same cells and draws
    for name in ("ablation.csv", "draws.csv", "means.csv", "eq3.csv"):
        got = pd.read_csv(tmp_path / name)
        want = pd.read_csv(expected_dir / name)
        if name == "ablation.csv":
            got, want = (f.sort_values(["condition", "trial", "scale"]).reset_index(drop=True) for f in (got, want))
        pd.testing.assert_frame_equal(got, want)
    assert not list((tmp_path / ".partial").glob("*.json"))


def test_rerun_of_a_finished_sweep_reads_nothing_but_the_means_pass_is_skipped(model, data, reference):
    expected, _, out = reference
    dataset = Counting(data)
    result = sweep(model, dataset, "3.1", [1, 4, 6], CONFIG, out_dir=out, progress=False)
    assert dataset.reads == 0
    pd.testing.assert_frame_equal(result.results, expected.results)


def test_cells_are_on_disk_when_a_pass_ends(model, data, tmp_path):
    dataset = Counting(data, stop=2 * N + 8)  # means and screening done, main pass in batch 1
    with pytest.raises(KeyboardInterrupt):
        sweep(model, dataset, "3.1", [1, 4, 6], CONFIG, out_dir=tmp_path, progress=False)
    assert (tmp_path / "means.csv").is_file() and (tmp_path / "sweep.json").is_file()
    cells = pd.read_csv(tmp_path / "ablation.csv")
    assert set(cells["scale"]) == {0.0}  # the no-scale cells of the screening pass
    assert sorted(cells["condition"]) == ["invariant", "none", "random", "random"]
    assert len(pd.read_csv(tmp_path / "draws.csv")) == 2
    partial = json.loads((tmp_path / ".partial" / "main.rank0.json").read_text())
    assert partial["next_batch"] == 1 and sum(partial["total"]) == BATCH * len(partial["total"])


def test_other_settings_are_refused(model, data, reference):
    _, _, out = reference
    with pytest.raises(ValueError, match="tolerance"):
        sweep(model, data, "3.1", [1, 4, 6], SweepConfig(**{**CONFIG.__dict__, "tolerance": 0.01}),
              out_dir=out, progress=False)
    with pytest.raises(ValueError, match="channels"):
        sweep(model, data, "3.1", [1, 4], CONFIG, out_dir=out, progress=False)


def test_a_folder_with_foreign_results_is_refused(model, data, tmp_path):
    (tmp_path / "ablation.csv").write_text("condition,trial\n")
    with pytest.raises(ValueError, match="no sweep.json"):
        sweep(model, data, "3.1", [1], CONFIG, out_dir=tmp_path, progress=False)
