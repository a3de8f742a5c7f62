"""``poselift bench``: every JSON key is filled, the table and the plots are written.

The fast test runs the real sections with budgets scaled down to a few seconds; the
slow one runs ``poselift bench --quick`` end to end (under a minute, for CI smoke use:
``pytest -m slow tests/test_bench.py``). Performance claims live in bench/results, not here.
"""

from __future__ import annotations

import json

import pytest

REQUIRED = [
    "stream_step_ms", "stream_step_bf16_ms", "stream_step_int8_ms", "int8_p1_delta_mm",
    "window_dilated_ms", "window_strided_ms", "floor_ms", "read_bandwidth_gbs",
    "offline_fps", "offline_reference_fps", "per_stream_ms", "zmq_p99_ms", "zmq_max_rate_fps",
    "zmq_lost", "pipeline_ms", "hardware",
]


def _check(results: dict) -> None:
    missing = [k for k in REQUIRED if k not in results]
    assert not missing, missing
    assert not results.get("errors"), results.get("errors")
    for k in REQUIRED:
        assert results[k] is not None, k
    assert results["stream_step_ms"] > 0 and results["floor_ms"] > 0
    assert set(results["per_stream_ms"]) >= {"1", "8", "32"}
    assert set(results["pipeline_ms"]) >= {"capture", "mediapipe", "lift", "publish", "total"}
    assert results["zmq_lost"] == 0
    for key in ("cpu", "cores", "torch"):
        assert results["hardware"][key]


def test_bench_sections_fill_every_key(tmp_path):
    from poselift.bench.report import markdown, plots
    from poselift.bench.runner import run_bench, write_json

    results = run_bench("cpu", quick=True, log=lambda m: None, scale=0.05)
    _check(results)
    write_json(results, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["stream_step_ms"] == results["stream_step_ms"]
    md = markdown(results)
    assert "| goal |" in md and "floor" in md
    names = sorted(p.split("/")[-1] for p in plots(results, tmp_path))
    assert names == ["latency_vs_receptive_field.png", "per_stream_cost.png", "throughput_vs_length.png"]


@pytest.mark.slow
def test_bench_quick_cli(tmp_path):
    import time

    from poselift.cli import main

    t = time.perf_counter()
    out = tmp_path / "quick.json"
    assert main(["bench", "--quick", "--json", str(out)]) == 0
    assert time.perf_counter() - t < 90
    _check(json.loads(out.read_text()))
    assert (tmp_path / "quick.md").exists() and (tmp_path / "per_stream_cost.png").exists()


def test_bench_help_has_an_example(capsys):
    from poselift.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "example: poselift bench" in capsys.readouterr().out
