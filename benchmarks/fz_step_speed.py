"""FZ step speed of the speed options of ``FeatureVizConfig`` (bfloat16 autocast, channels-last)
against float32, and their verdict agreement with float32 on the demo's blocks (issue 22 item 4).

    python benchmarks/fz_step_speed.py [--threads 1] [--rounds 3] [--blocks 1.1 2.0 2.1 3.1] [--quick]

Speed: channel-steps per second of the real engine (:func:`rsi_plugin.featureviz.optimize.visualize`,
fixed step count, the default batch width ``channels_per_batch``) on ``tiny`` (bundled, 64 px)
and resnet18 (random init, 224 px), every option once per round, the order rotating each round
so that all see the same machine load; the median over rounds. Wall and process CPU time are
recorded, with the machine (CPU model, whether it reports ``avx512_bf16`` / ``amx_bf16`` in
``/proc/cpuinfo``) and ``os.getloadavg()`` at start and end.

Verdicts: :func:`rsi_plugin.criteria.channel_scan.scan` of ``tiny``'s blocks with the demo's FZ
settings (``FeatureVizConfig`` defaults: 2,560-step cap with the plateau stop), seed 0, in float32
and with each option; the verdicts per (block, channel) compared with float32's, and with
float32 at seed 1 (the disagreement a change of FZ seed makes). The issue's rule: an option
becomes the default only if it is >= 1.2x faster on both models and changes no more verdicts
than the seed change.

Writes ``benchmarks/results/fz_step_speed.json`` and ``.md`` (``--out`` for another stem).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
OPTIONS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "bf16": {"autocast": "bfloat16"},
    "channels_last": {"memory_format": "channels_last"},
    "bf16+channels_last": {"autocast": "bfloat16", "memory_format": "channels_last"},
}
DEMO_BLOCKS = ["1.1", "2.0", "2.1", "3.1"]
SPEEDUP_RULE = 1.2


def machine() -> dict[str, Any]:
    """CPU model, its bfloat16 flags (from /proc/cpuinfo: lscpu may not list them), cores."""
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), model)
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags, "amx_tile": "amx_tile" in flags, "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _cases(quick: bool, device: str) -> list[dict[str, Any]]:
    import rsi_plugin as rsi

    if quick:
        return [{"model": "tiny", "size": 32, "block": "2.1", "node": "post", "steps": 2, "width": 4,
                 "net": rsi.load_model("tiny", device=device)}]
    return [{"model": "tiny", "size": 64, "block": "2.1", "node": "post", "steps": 16, "width": None,
             "net": rsi.load_model("tiny", device=device)},
            {"model": "resnet18", "size": 224, "block": "2.1", "node": "post", "steps": 2, "width": None,
             "net": rsi.load_model("resnet18", weights=None, device=device)}]


def speed(cases: list[dict[str, Any]], options: list[str], rounds: int) -> list[dict[str, Any]]:
    """Channel-steps per second of each (case, option), interleaved over ``rounds`` (median)."""
    from rsi_plugin.featureviz.optimize import FeatureVizConfig, visualize

    rows = []
    for case in cases:
        width = case["width"] or FeatureVizConfig().channels_per_batch
        channels = list(range(width))

        def run(name: str, steps: int) -> tuple[float, float]:
            cfg = FeatureVizConfig(steps=steps, early_stop=False, image_size=case["size"], channels_per_batch=width,
                                   **OPTIONS[name])
            wall, cpu = time.perf_counter(), time.process_time()
            visualize(case["net"], case["block"], case["node"], channels, cfg)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            return time.perf_counter() - wall, time.process_time() - cpu

        for name in options:  # warm-up: first-call costs (oneDNN kernels, allocations)
            run(name, 1)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in options}
        for r in range(rounds):
            order = options[r % len(options):] + options[:r % len(options)]
            for name in order:
                times[name].append(run(name, case["steps"]))
        work = width * case["steps"]
        base = statistics.median(w for w, _ in times["fp32"]) if "fp32" in times else None
        param_s = _param_seconds(case["size"], width, case["net"])
        for name in options:
            wall = statistics.median(w for w, _ in times[name])
            cpu = statistics.median(c for _, c in times[name])
            rows.append({"model": case["model"], "size": case["size"], "block": case["block"], "node": case["node"],
                         "width": width, "steps": case["steps"], "option": name, "rounds": rounds,
                         "wall_s": [round(w, 4) for w, _ in times[name]],
                         "channel_steps_per_s": work / wall, "cpu_channel_steps_per_s": work / cpu if cpu else None,
                         "speedup": base / wall if base else None,
                         "param_share": param_s * case["steps"] / wall})
            print(f"{case['model']:9s} {case['size']:4d}px {name:19s} {work / wall:9.1f} channel-steps/s "
                  f"(x{(base / wall) if base else float('nan'):.2f} vs fp32)", flush=True)
    return rows


def _param_seconds(size: int, width: int, net: torch.nn.Module, repeats: int = 3) -> float:
    """Seconds of one step's image parameterisation (FFT spectrum, colour, sigmoid), forward and
    backward, for ``width`` channels: the most that sharing its work could save (the FFT is
    already one batched ``irfftn`` over the rows)."""
    from rsi_plugin.core.tensors import model_device
    from rsi_plugin.featureviz.param import ImageParam, init_params

    device = model_device(net)
    image_of = ImageParam(size, device=device)
    params = init_params([torch.Generator().manual_seed(i) for i in range(width)], size, fft=True, sd=0.01)
    params = params.to(device).requires_grad_(True)
    image_of(params).sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        image_of(params).sum().backward()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def _verdicts(table) -> dict[str, str]:
    return {f"{b}:{c}": str(v) for b, c, v in zip(table["block"], table["channel"], table["verdict"])}


def agreement(blocks: list[str], options: list[str], channels: list[int] | None, steps: int | None,
              device: str) -> dict[str, Any]:
    """Verdicts of a scan per option (seed 0) and of float32 at seed 1, compared with float32 at seed 0."""
    import rsi_plugin as rsi
    from rsi_plugin.criteria.channel_scan import ScanConfig, scan
    from rsi_plugin.featureviz.optimize import FeatureVizConfig

    model = rsi.load_model("tiny", device=device)
    runs = [("fp32", 0)] + [(name, 0) for name in options if name != "fp32"] + [("fp32", 1)]
    found: dict[str, dict[str, str]] = {}
    seconds: dict[str, float] = {}
    for name, seed in runs:
        fz = FeatureVizConfig(seed=seed, **OPTIONS[name], **({"steps": steps} if steps else {}))
        start = time.perf_counter()
        table = scan(model, blocks, ScanConfig(featureviz=fz, seeds=(seed,), channels=channels), progress=False)
        label = f"{name}@seed{seed}"
        seconds[label] = time.perf_counter() - start
        found[label] = _verdicts(table)
        print(f"scan {label}: {seconds[label]:.0f} s, verdicts {sorted(set(found[label].values()))}", flush=True)
    ref = found["fp32@seed0"]

    def moved(other: dict[str, str]) -> list[str]:
        return [k for k in ref if other.get(k) != ref[k]]

    compared = {label: {"changed": len(moved(v)), "channels": len(ref), "which": moved(v)}
                for label, v in found.items() if label != "fp32@seed0"}
    return {"blocks": blocks, "channels": channels, "steps": steps, "seconds": seconds, "compared": compared,
            "seed_change": compared["fp32@seed1"]["changed"]}


def decide(rows: list[dict[str, Any]], verdicts: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The issue's rule per option: >= 1.2x faster on every model AND no more verdicts changed
    than the seed change."""
    out = {}
    for name in dict.fromkeys(r["option"] for r in rows):
        if name == "fp32":
            continue
        speedups = {r["model"]: r["speedup"] for r in rows if r["option"] == name}
        fast = all(s is not None and s >= SPEEDUP_RULE for s in speedups.values())
        changed = verdicts["compared"].get(f"{name}@seed0", {}).get("changed") if verdicts else None
        stable = changed is not None and changed <= verdicts["seed_change"]
        out[name] = {"speedups": speedups, "verdicts_changed": changed,
                     "seed_change": verdicts["seed_change"] if verdicts else None, "fast": fast, "stable": stable,
                     "adopt": bool(fast and stable)}
    return out


def markdown(result: dict[str, Any]) -> str:
    m, lines = result["machine"], []
    lines += ["# FZ step speed: float32 vs the speed options (issue 22 item 4)", "",
              f"Machine: {m['cpu']}, {m['cores']} cores, avx512_bf16 {m['avx512_bf16']}, amx_bf16 {m['amx_bf16']}, "
              f"torch {m['torch']}, device {result['device']}, {result['threads']} thread(s). "
              f"Load average (1/5/15 min) at start {result['load_start']}, at end {result['load_end']} "
              "(a shared machine: other work inflates wall times; the rounds are interleaved so every "
              "option sees the same load).", "",
              "| model | px | block/node | batch | steps | option | channel-steps/s | x fp32 |",
              "|---|---|---|---|---|---|---|---|"]
    for r in result["speed"]:
        lines.append(f"| {r['model']} | {r['size']} | {r['block']} {r['node']} | {r['width']} | {r['steps']} | "
                     f"{r['option']} | {r['channel_steps_per_s']:.1f} | {r['speedup']:.2f} |")
    shares = {r["model"]: r["param_share"] for r in result["speed"] if r["option"] == "fp32" and "param_share" in r}
    if shares:
        lines += ["", "The image parameterisation (FFT spectrum, colour, sigmoid; forward and backward) is "
                  + ", ".join(f"{100 * s:.0f} % of an fp32 step on {m}" for m, s in shares.items())
                  + ": its FFT is already one batched `irfftn` over the rows; removing it entirely would make "
                  "a step at most " + ", ".join(f"x{1 / (1 - s):.2f} faster on {m}" for m, s in shares.items())
                  + f" (the rule asks x{SPEEDUP_RULE})."]
    v = result.get("verdicts")
    if v:
        lines += ["", f"Verdict agreement: `tiny`, blocks {' '.join(v['blocks'])}"
                  f"{', channels ' + str(v['channels']) if v['channels'] else ', all channels'}, the demo's FZ "
                  f"settings{' (steps ' + str(v['steps']) + ')' if v['steps'] else ''}, seed 0, against float32 "
                  "seed 0.", "", "| run | verdicts changed | of | scan s |", "|---|---|---|---|"]
        for label, c in v["compared"].items():
            lines.append(f"| {label} | {c['changed']} | {c['channels']} | {v['seconds'][label]:.0f} |")
    lines += ["", f"Decision (adopt by default only if >= {SPEEDUP_RULE}x faster on both models AND no more "
              "verdicts changed than a change of FZ seed):", ""]
    for name, d in result["decision"].items():
        speed = ", ".join(f"{k} x{s:.2f}" for k, s in d["speedups"].items())
        lines.append(f"- `{name}`: {speed}; verdicts changed {d['verdicts_changed']} (seed change "
                     f"{d['seed_change']}): {'ADOPT' if d['adopt'] else 'stays an option (default unchanged)'}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the speed cases (median)")
    p.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    p.add_argument("--blocks", nargs="*", default=DEMO_BLOCKS, help="tiny's blocks of the verdict scans "
                   "(the demo's by default; none: skip the verdict part)")
    p.add_argument("--channels", type=int, nargs="+", default=None, help="only these channels of each block")
    p.add_argument("--scan-steps", type=int, default=None, help="FZ step cap of the verdict scans (default: the demo's)")
    p.add_argument("--no-speed", action="store_true", help="skip the speed part (the verdict scans only)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny at 32 px, 2 steps, 4 channels; "
                   "a 1-channel, 4-step verdict scan of block 1.1")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fz_step_speed",
                   help="path stem of the .json and .md written")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    options = ["fp32"] + [o for o in args.options if o != "fp32"]
    if args.quick:
        args.rounds, args.blocks, args.channels, args.scan_steps = min(args.rounds, 2), ["1.1"], [0], 4
    result: dict[str, Any] = {"machine": machine(), "device": args.device, "threads": args.threads,
                              "load_start": [round(x, 2) for x in os.getloadavg()], "quick": args.quick,
                              "rule": {"speedup": SPEEDUP_RULE, "verdicts": "no more changed than a seed change"}}
    print(json.dumps(result["machine"]), "load", result["load_start"], flush=True)
    result["speed"] = [] if args.no_speed else speed(_cases(args.quick, args.device), options, args.rounds)
    result["verdicts"] = agreement(args.blocks, options, args.channels, args.scan_steps, args.device) \
        if args.blocks else None
    result["load_end"] = [round(x, 2) for x in os.getloadavg()]
    result["decision"] = decide(result["speed"], result["verdicts"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
