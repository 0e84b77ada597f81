"""Time the demo's planted-control stage alone (the planted model and its 2 untrained copies, 3
FZ seeds, the Eq. 3 positive control), to compare the speed of two code trees on one machine at
one time:

    for tree in /path/to/old /path/to/new; do PYTHONPATH=$tree python benchmarks/planted_stage_time.py; done

It prints the tree it imported, torch's thread count and the wall time.
"""

from __future__ import annotations

import sys
import tempfile
import time


def main() -> int:
    import torch

    import rsi_plugin
    from rsi_plugin.apps.planted import PlantedControlConfig, run_planted_control

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run_planted_control(out, PlantedControlConfig(seeds=(0, 1, 2), controls=2), progress=False)
        seconds = time.perf_counter() - start
    print(f"{rsi_plugin.__file__}: {torch.get_num_threads()} threads, planted stage {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
