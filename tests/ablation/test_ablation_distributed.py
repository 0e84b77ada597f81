"""The sweep under ``torchrun`` with two CPU processes (gloo) gives the one-process table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import torch
from rsi_plugin.testing.models import random_data, small_resnet  # noqa: F401

from rsi_plugin.ablation import SweepConfig, sweep
from rsi_plugin.testing.processes import free_port

TESTS = Path(__file__).resolve().parent
CONFIG = dict(scales=(0.0, 0.3), trials=2, tolerance=0.0, max_draws=6, seed=0, batch_size=4, screen_batch=1,
              checkpoint_every=1, null_sets=3)
CHANNELS = [2, 3, 5, 8]
BAD_ITEM = 9


class Data(torch.utils.data.Dataset):
    """23 seeded images; item 9 cannot be read; counts its reads."""

    def __init__(self):
        self.images, self.labels = random_data(23, seed=7)
        self.reads = 0

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        self.reads += 1
        if i == BAD_ITEM:
            raise OSError("unreadable item")
        return self.images[i], int(self.labels[i])


SCRIPT = """
import json, sys
import torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from test_ablation_distributed import CHANNELS, CONFIG, Data
from rsi_plugin.testing.models import small_resnet
from rsi_plugin.ablation import SweepConfig, sweep
from rsi_plugin.core.distributed import init_from_env, rank_and_world

if not init_from_env():
    raise SystemExit("no process group from the environment")
rank, world = rank_and_world()
data = Data()
result = sweep(small_resnet(seed=6), data, "3.1", CHANNELS, SweepConfig(**CONFIG), out_dir={out!r}, progress=False)
result.results.to_csv({out!r} + f"/results.rank{{rank}}.csv", index=False)
result.draws.to_csv({out!r} + f"/draws.rank{{rank}}.csv", index=False)
torch.save(result.means, {out!r} + f"/means.rank{{rank}}.pt")
with open({out!r} + f"/info.rank{{rank}}.json", "w") as f:
    json.dump({{"world": world, "reads": data.reads, "skipped": result.skipped.entries}}, f)
"""


def test_two_process_torchrun_sweep_equals_one_process(tmp_path):
    out = tmp_path / "two"
    out.mkdir()
    script = tmp_path / "run_sweep.py"
    script.write_text(textwrap.dedent(SCRIPT.format(tests=str(TESTS), out=str(out))))
    # the package of this tree first (not an installed copy), then the test helpers
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    data = Data()
    one = sweep(small_resnet(seed=6), data, "3.1", CHANNELS, SweepConfig(**CONFIG), out_dir=tmp_path / "one",
                progress=False)
    infos = [json.loads((out / f"info.rank{r}.json").read_text()) for r in (0, 1)]
    assert [i["world"] for i in infos] == [2, 2]
    # each process read its own batches: together exactly what one process read
    assert infos[0]["reads"] + infos[1]["reads"] == data.reads
    assert 0 < infos[0]["reads"] < data.reads and 0 < infos[1]["reads"] < data.reads
    for rank in (0, 1):
        results = pd.read_csv(out / f"results.rank{rank}.csv", dtype={"channels": str}, keep_default_na=False)
        pd.testing.assert_frame_equal(results, one.results, check_dtype=False)
        draws = pd.read_csv(out / f"draws.rank{rank}.csv", dtype={"channels": str})
        pd.testing.assert_frame_equal(draws, one.draws, check_dtype=False)
        assert torch.equal(torch.load(out / f"means.rank{rank}.pt"), one.means)
        assert infos[rank]["skipped"] == {"item 9": "OSError: unreadable item"}
    assert set(one.results["n_images"]) == {22}
    # the main process wrote the shared files, the same as one process's
    for name in ("ablation.csv", "draws.csv", "eq3.csv", "means.csv"):
        got, want = pd.read_csv(out / name), pd.read_csv(tmp_path / "one" / name)
        if name == "ablation.csv":
            got, want = (f.sort_values(["condition", "trial", "scale"]).reset_index(drop=True) for f in (got, want))
        pd.testing.assert_frame_equal(got, want)
    assert not one.draws["kept"].all()  # a draw was rejected: screening took more than one pass
