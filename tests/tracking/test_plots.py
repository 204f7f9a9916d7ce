"""The front's CSV, PNG and HTML artifacts."""

from __future__ import annotations

import csv

from autoprune.search.records import TrialRecord
from autoprune.search.reference import Reference
from autoprune.tasks import Objective
from autoprune.tracking.plots import plot_front_html, plot_front_png, write_front_csv

ACCURACY = Objective("accuracy", "maximize")


def records() -> list[TrialRecord]:
    out = []
    for i, (acc, lat) in enumerate([(0.99, 2.0), (0.97, 1.0), (0.95, 1.5)]):
        out.append(TrialRecord(i, {}, "complete", {
            "accuracy": acc, "latency_ms": lat, "latency_p90_ms": lat, "latency_cv": 0.01,
            "speedup": 2.0 / lat, "params": 1000.0, "macs": 1e6, "size_mb": 0.1,
            "sparsity": 0.5}, latency_source="measured", summary=f"policy {i}"))
    return out


def test_csv_has_one_row_per_front_trial(tmp_path):
    front = records()[:2]
    write_front_csv(front, {0: 0.98}, tmp_path / "front.csv", ACCURACY)
    rows = list(csv.DictReader(open(tmp_path / "front.csv")))
    assert [r["trial"] for r in rows] == ["0", "1"]
    assert rows[0]["test_accuracy"] == "0.98" and rows[1]["test_accuracy"] == ""
    assert rows[1]["policy"] == "policy 1" and rows[1]["latency_source"] == "measured"


def test_png_and_html_are_written_and_self_contained(tmp_path):
    all_records = records()
    front = [all_records[1], all_records[0]]
    base = Reference(ACCURACY, 0.995, 2.2, finetuned=0.996)
    plot_front_png(all_records, front, base, "t", tmp_path / "f.png")
    plot_front_html(all_records, front, base, "t", tmp_path / "f.html")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "f.html").read_text()
    assert "policy 1" in html and "latency (ms, measured)" in html
    assert "base fine-tuned like a trial" in html and "higher is better" in html
    assert "src=\"https://cdn.plot.ly" not in html  # plotly.js is inlined: works offline
    assert "plotly.js" in html


def test_a_minimised_metric_is_plotted_as_it_is(tmp_path):
    perplexity = Objective("perplexity", "minimize")
    rows = [TrialRecord(0, {}, "complete", {"perplexity": 5.5, "latency_ms": 1.0},
                        latency_source="measured", summary="p")]
    base = Reference(perplexity, 5.0, 2.0)
    plot_front_html(rows, rows, base, "t", tmp_path / "f.html")
    html = (tmp_path / "f.html").read_text()
    assert "perplexity 5.5" in html and "lower is better" in html
    write_front_csv(rows, {0: 5.6}, tmp_path / "front.csv", perplexity)
    row = next(csv.DictReader(open(tmp_path / "front.csv")))
    assert row["perplexity"] == "5.5" and row["test_perplexity"] == "5.6"
