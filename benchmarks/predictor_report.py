"""The Markdown table of benchmarks/predictor_accuracy.py's results."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

# What "Latency you can trust" asks of the kernel-level model.
ZOO_TARGET = {"kendall_tau": 0.9, "within": 0.9}  # within 10% of measured
HELD_OUT_TARGET = {"kendall_tau": 0.85, "within": 0.8}  # within 15%


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """`median [min, max]` of values across runs."""
    return (f"{scale * statistics.median(values):.{digits}f} [{scale * min(values):.{digits}f}, "
            f"{scale * max(values):.{digits}f}]")


def _cells(rows: list[dict], model: str, target: dict[str, float]) -> str:
    taus = [r[model]["kendall_tau"] for r in rows]
    within = [r[model]["within"] for r in rows]
    mapes = [r[model]["mape"] for r in rows]
    met = statistics.median(taus) >= target["kendall_tau"] and \
        statistics.median(within) >= target["within"]
    return (f"{spread(taus)} | {spread(within, 100, 0)} | {spread(mapes, 100, 1)} | "
            f"{'yes' if met else 'no'}")


def report(data: dict, zoo: Sequence[str], fitted: Sequence[str]) -> str:
    runs = data["runs"]
    n = len(runs)
    fits = "; ".join(f"{name} {spread([r['fit'][name] for r in runs], digits=3)}"
                     for name in fitted)
    header = ("| model | variants | measured ms (min-max) | latency model | Kendall tau | "
              "within % | MAPE % | targets met | tau between passes |")
    lines = [f"# Latency models against measurement, hardware={data['profile']}\n",
             f"`{data['command']}` at commit {data['commit']}\n",
             f"Each figure is the median [min, max] over {n} runs, each calibrated afresh by "
             "`python -m autoprune calibrate` (72 models). Kernel-level model: "
             f"{spread([r['kernels'] for r in runs], digits=0)} distinct kernels timed; on its "
             "calibration set MAPE "
             f"{spread([r['calibration']['kernel']['mape'] for r in runs], 100, 1)}%, tau "
             f"{spread([r['calibration']['kernel']['kendall_tau'] for r in runs])}. "
             f"Roofline factors: {fits}; on the calibration set MAPE "
             f"{spread([r['calibration']['roofline']['mape'] for r in runs], 100, 1)}%.\n",
             "Measurement spread on this machine (CV between the three passes over each zoo "
             f"variant): median {spread([r['pass_cv_median'] for r in runs], 100, 1)}%, p90 "
             f"{spread([r['pass_cv_p90'] for r in runs], 100, 1)}%, max "
             f"{spread([r['pass_cv_max'] for r in runs], 100, 1)}%.\n",
             "Targets (kernel-level model): zoo, Kendall tau >= 0.9 and >= 90% of variants "
             "within 10% of measured; held out, tau >= 0.85 and >= 80% within 15%.\n",
             "The last column is Kendall tau between two measurement passes over the same "
             "variants (median of the three pairs): how far the measurement itself ranks "
             "them consistently.\n",
             header, "|---|---|---|---|---|---|---|---|---|"]
    for name in zoo:
        rows = [r["models"][name] for r in runs]
        measured = (f"{min(r['measured_ms_min'] for r in rows):.3f}-"
                    f"{max(r['measured_ms_max'] for r in rows):.3f}")
        for model in ("kernel", "roofline"):
            label = "kernel-level" if model == "kernel" else "roofline"
            lines.append(f"| {name} | {rows[0]['variants']} | {measured} | {label} | "
                         f"{_cells(rows, model, ZOO_TARGET)} | "
                         f"{spread([r['pass_tau'] for r in rows])} |")
    if all("held_out" in r for r in runs):
        rows = [r["held_out"] for r in runs]
        measured = (f"{min(r['measured_ms_min'] for r in rows):.3f}-"
                    f"{max(r['measured_ms_max'] for r in rows):.3f}")
        for model in ("kernel", "roofline"):
            label = "kernel-level" if model == "kernel" else "roofline"
            lines.append(f"| held out (HybridNet, via `latency`; within 15%) | "
                         f"{rows[0]['variants']} | {measured} | {label} | "
                         f"{_cells(rows, model, HELD_OUT_TARGET)} | - |")
    return "\n".join(lines) + "\n"
