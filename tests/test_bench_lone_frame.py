"""bench.lone_frame: the parts of a lone frame's round in serve's loop."""

from poselift.bench import lone_frame
from poselift.stream import service


def test_every_part_of_a_lone_round_is_timed_and_the_loop_is_left_as_it_was():
    decode = service.decode_inputs
    r = lone_frame.lone_frame_parts(frames=40, streams=2)
    assert service.decode_inputs is decode
    parts = r["parts_ms"]
    assert set(parts) == {"decode", "intake", "pose step", "trajectory step", "roots", "stage: FrameRateCheck",
                          "stage: MotionWire", "publish", "rest"}
    assert all(ms >= 0 for ms in parts.values())
    assert parts["pose step"] > 0 and parts["publish"] > 0 and parts["stage: MotionWire"] > 0
    # the parts are medians of the same rounds: together about one round, never several
    assert sum(parts.values()) < 3 * r["round_ms"]["p50"]
    assert r["round_ms"]["p50"] <= r["round_ms"]["p90"] <= r["round_ms"]["p99"]
    r.update(hardware="test machine", load_average=[0.0, 0.0])
    md = lone_frame.markdown(r)
    assert "| pose step |" in md and "round (poll_once)" in md


def test_without_the_trajectory_network_there_is_no_trajectory_step():
    r = lone_frame.lone_frame_parts(frames=20, streams=2, root="fit")
    assert "trajectory step" not in r["parts_ms"] and r["parts_ms"]["pose step"] > 0 and r["root"] == "fit"
