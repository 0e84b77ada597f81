"""The power of the Eq. 3 test: how large a scale-specific deficit does a run of the demo's size
detect? Drawn on the planted classifier (``rsi_plugin.zoo.planted.build_planted(strength)``),
whose accuracy on zoomed images depends on its planted channels by a tunable amount: for each
strength and replicate (other images, other random and null sets) the sweep ablates the planted
channels at Post with the demo's sizes (1,000 images, 10 screened random sets, 200 null sets,
scales 0-50 %), and the test of :mod:`rsi_plugin.ablation.eq3_stats` decides (p_null below 0.05
after Bonferroni over the scaled conditions). Rows: per (strength, replicate) the invariant
set's deficit D(p) at each scale, its smallest p_null and whether it was detected; then per
strength the mean deficit at 50 % and the detection rate. With ``--plot PATH`` the power curve
(detection rate against the mean deficit at the most affected scale).

    python benchmarks/eq3_power.py [--quick] [--replicates N] [--json PATH] [--plot PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.harness import environment, finish, parse, parser  # noqa: E402
from rsi_plugin.paper import SWEEP_SCALES  # noqa: E402

STRENGTHS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 1.0)
SCALES = SWEEP_SCALES


def one_run(strength: float, replicate: int, samples: int, trials: int, null_sets: int,
            scales: tuple[float, ...] = SCALES) -> dict:
    """One sweep of the planted classifier at ``strength``; replicate ``r`` draws other images and sets."""
    from rsi_plugin.ablation.experiment import SweepConfig, sweep
    from rsi_plugin.apps.planted import eq3_detected
    from rsi_plugin.zoo.planted import PLANTED_BLOCK, PLANTED_CHANNELS, build_planted, planted_data

    model = build_planted(strength=strength)
    data = planted_data(samples, seed=1000 + replicate)
    config = SweepConfig(scales=scales, trials=trials, null_sets=null_sets, seed=replicate, tolerance="auto")
    summary = sweep(model, data, PLANTED_BLOCK, list(PLANTED_CHANNELS), config, progress=False).summary
    scaled = summary[summary["scale"] > 0]
    row = {"strength": strength, "replicate": replicate, "detected": eq3_detected(summary),
           "min_p_null": float(scaled["p_null"].min())}
    for record in scaled.to_dict("records"):
        row[f"D@{int(round(100 * record['scale']))}"] = float(record["deficit"])
    row["largest_deficit"] = float(scaled["deficit"].min())
    row["detectable_deficit_best"] = float(scaled["detectable_deficit"].max()) if "detectable_deficit" in scaled else None
    return row


def run(quick: bool = False, replicates: int | None = None, strengths=STRENGTHS) -> dict:
    replicates = replicates or (2 if quick else 5)
    samples, trials, null_sets = (300, 4, 60) if quick else (1000, 10, 200)
    scales = SCALES
    if quick:  # two scaled conditions, so that 60 null sets can reach p_null < 0.05 / 2 (with five they cannot)
        strengths, scales = (0.0, 0.1, 1.0), (0.0, 0.3, 0.5)
    runs = [one_run(s, r, samples, trials, null_sets, scales) for s in strengths for r in range(replicates)]
    rows = []
    for s in strengths:
        mine = [r for r in runs if r["strength"] == s]
        rows.append({"strength": s, "replicates": len(mine),
                     "mean_largest_deficit": sum(r["largest_deficit"] for r in mine) / len(mine),
                     "min_largest_deficit": min(r["largest_deficit"] for r in mine),
                     "max_largest_deficit": max(r["largest_deficit"] for r in mine),
                     "detection_rate": sum(bool(r["detected"]) for r in mine) / len(mine),
                     "median_detectable_deficit": sorted(r["detectable_deficit_best"] for r in mine)[len(mine) // 2]})
    return {"environment": environment(), "rows": rows, "runs": runs,
            "sizes": {"images": samples, "trials": trials, "null_sets": null_sets, "scales": list(scales)},
            "goal": "detection rate near 0 at strength 0 (the test's false-positive rate) and rising with the deficit"}


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(6, 4))
    x = [-r["mean_largest_deficit"] for r in rows]
    ax.plot(x, [r["detection_rate"] for r in rows], "o-")
    for i, (r, xv) in enumerate(zip(rows, x)):
        ax.annotate(f"s={r['strength']:g}", (xv, r["detection_rate"]), textcoords="offset points",
                    xytext=(-8, -14 - 10 * (i % 3)), fontsize=7)
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("deficit of the planted set, -D at its most affected scale (mean over replicates)", fontsize=8)
    ax.set_ylabel("detection rate (p_null x scales < 0.05)")
    sizes = result["sizes"]
    ax.set_title(f"Eq. 3 power on the planted classifier: {sizes['images']} images, {sizes['trials']} random sets, "
                 f"{sizes['null_sets']} null sets", fontsize=8)
    ax.set_ylim(-0.25, 1.1)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--replicates", type=int, default=None, help="replicates per strength (default 5; quick 2)")
    p.add_argument("--plot", default=None, help="write the power curve as a PNG here")
    args = parse(p, argv)
    result = run(args.quick, args.replicates)
    if args.plot:
        plot(result, args.plot)
    return finish(result, args)


if __name__ == "__main__":
    sys.exit(main())
