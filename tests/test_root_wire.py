"""The root wired into the protocol (issue 13): the optional input field ``focal_px``."""

from __future__ import annotations

import math

import msgpack
import pytest

from poselift.stream.protocol import ProtocolError, decode_input, encode_input


def _msg(**extra) -> bytes:
    base = msgpack.unpackb(encode_input("cam0", 0, [[1.0, 2.0]] * 17, width=640, height=480, t=0.0))
    return msgpack.packb(base | extra)


def test_focal_px_is_optional_and_read():
    assert decode_input(_msg()).focal_px is None
    assert decode_input(_msg(focal_px=None)).focal_px is None
    assert decode_input(_msg(focal_px=554)).focal_px == 554.0
    assert decode_input(encode_input("c", 0, [[1.0, 2.0]] * 17, width=640, height=480, focal_px=600.5)).focal_px == 600.5


@pytest.mark.parametrize("value, reason", [
    (0, "bad_type"), (-500.0, "bad_type"), ("600", "bad_type"), (True, "bad_type"), ([600], "bad_type"),
    (math.nan, "non_finite"), (math.inf, "non_finite"), (1e300, "bad_type"),
])
def test_a_bad_focal_px_is_rejected_with_a_reason(value, reason):
    with pytest.raises(ProtocolError) as exc:
        decode_input(_msg(focal_px=value))
    assert exc.value.reason == reason and "focal_px" in exc.value.detail
