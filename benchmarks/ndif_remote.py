"""What a request to a self-hosted NDIF costs, and a remote FZ render per channel-step, vs local.

Needs a running server with ``torchvision:resnet18:random@0`` deployed (``rsi serve start``,
``rsi serve deploy torchvision:resnet18:random@0``), so it is not among the ``bench_*``
scripts ``python -m benchmarks`` runs::

    python benchmarks/ndif_remote.py --url http://127.0.0.1:8001 [--quick] [--json out.json]

Rows: the median of ``repeats`` interleaved calls (warm-up excluded, :mod:`rsi_plugin.apps.timing`)
of the plain forward, a local nnsight trace, and the same trace sent to the server, per
batch; and one FZ render of ``channels`` channels x ``steps`` steps, here and as one remote
request (the whole optimisation runs on the server), with the cost per channel-step. Every
remote result is checked bitwise against the local one.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.harness import environment, finish, parse, parser  # noqa: E402


def run(quick: bool = False, url: str = "http://127.0.0.1:8001") -> dict:
    import nnsight

    import rsi_plugin as rsi
    from rsi_plugin.featureviz.optimize import FeatureVizConfig, render
    from rsi_plugin.apps.timing import time_cases

    nnsight.CONFIG.APP.REMOTE_LOGGING = False
    model = rsi.load_model("resnet18", seed=0)
    envoy = rsi.wrap(model)
    rows = []
    for batch, size in ((1, 64), (8, 224)) if not quick else ((1, 64),):
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))

        def plain():
            with torch.no_grad():
                return model(x)

        def traced(remote=None):
            kwargs = {"remote": remote} if remote else {}
            with torch.no_grad():
                with envoy.trace(x, **kwargs):
                    out = envoy.layer4.output.save()
            return out

        assert torch.equal(traced(url), traced()), "remote and local traces differ"
        timings = time_cases({"plain": plain, "trace": traced, "remote": lambda: traced(url)},
                             repeats=3 if quick else 7, warmup=1)
        base = timings["plain"].median
        for name, timing in timings.items():
            rows.append({"case": f"{name} b{batch} {size}px", "median_s": round(timing.median, 4),
                         "iqr_s": round(timing.iqr, 4), "x_plain": round(timing.median / base, 2),
                         "ms_per_channel_step": None})
        rows.append({"case": f"per-request cost b{batch} {size}px",
                     "median_s": round(timings["remote"].median - timings["trace"].median, 4), "iqr_s": None,
                     "x_plain": None, "ms_per_channel_step": None})
    channels, steps = [0, 1, 2, 3], (16 if quick else 64)
    config = FeatureVizConfig(image_size=64, steps=steps, channels_per_batch=len(channels), seed=0)
    for where, remote in (("local", None), ("remote", url)):
        began = time.perf_counter()
        result = render(model, "2.0", "post", channels, config=config, progress=False, remote=remote)
        elapsed = time.perf_counter() - began
        rows.append({"case": f"FZ render {where}: {len(channels)} ch x {steps} steps, 64px",
                     "median_s": round(elapsed, 3), "iqr_s": None,
                     "x_plain": None, "ms_per_channel_step": round(1e3 * elapsed / (len(channels) * steps), 2)})
        if where == "local":
            reference = result
        else:
            assert torch.equal(result.images, reference.images), "remote and local FZs differ"
    return {"environment": {**environment(), "url": url}, "rows": rows}


if __name__ == "__main__":
    p = parser("Cost of requests to a self-hosted NDIF (needs a running server)")
    p.add_argument("--url", default="http://127.0.0.1:8001", help="the NDIF API (default http://127.0.0.1:8001)")
    args = parse(p)
    sys.exit(finish(run(args.quick, args.url), args))
