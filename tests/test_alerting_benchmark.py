"""The scenario benchmark end to end at a tiny size: incidents replayed through POST /feedback are found,
routed to the right owner and playbook; the evaluation-time part runs."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "alert_scenario.py"


@pytest.mark.slow
def test_alert_scenario_benchmark_small(tmp_path):
    spec = importlib.util.spec_from_file_location("alert_scenario", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(["--skus", "10", "--per-sku-daily", "25", "--history-days", "8", "--incident-days", "1",
                          "--detect-every-hours", "3", "--skip", "clean", "--perf-skus", "20", "--perf-days", "3",
                          "--workspace", str(tmp_path), "--out", str(tmp_path / "report.json")])
    first = report["incidents"]["per_incident"][0]
    assert first["incident"] == "SKU defect spike" and first["detected"], first
    assert first["right_owner"] and first["right_playbook"] and first["notified"]
    assert report["incidents"]["notifications_logged"] >= 1
    assert report["evaluation_time"]["items"] > 0 and report["targets"]["evaluation_under_5s"] in (True, False)
    assert (tmp_path / "report.json").exists()
