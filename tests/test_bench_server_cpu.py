"""bench.server_cpu: serve's loop per pose without sockets, and the networks' share of it."""

from poselift.bench import server_cpu


def test_a_variant_reports_its_cost_and_the_networks_share():
    r = server_cpu._run_variant(8, 300, server_cpu.VARIANTS["shipped"])
    assert r["poses"] >= 300 and r["us_per_pose_cpu"] > 0 and r["us_per_pose_wall"] > 0
    assert r["pose_step_us_per_stream"] > 0 and r["trajectory_step_us_per_stream"] > 0
    # the networks' step is part of what a pose costs in the loop, never more than all of it
    assert r["pose_step_us_per_stream"] + r["trajectory_step_us_per_stream"] < r["us_per_pose_cpu"]


def test_markdown_shows_the_rest_of_a_pose_next_to_the_networks():
    run = {"us_per_pose_cpu": 100.0, "us_per_pose_wall": 99.0, "kernel": "aten-fp32",
           "pose_step_us_per_stream": 40.0, "trajectory_step_us_per_stream": 15.0}
    r = {"hardware": "test", "load_average": [0.1, 0.2], "drain": 512, "poses": 10,
         "streams_256": {v: dict(run, runs=[run]) for v in server_cpu.VARIANTS}}
    md = server_cpu.markdown(r)
    assert "| 256 | 40 | 15 | 45 |" in md
