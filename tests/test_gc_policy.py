"""poselift/gc_policy.py: the collector setting of long-running loops (run in subprocesses:
freezing the pytest process's heap would keep every test's garbage alive)."""

import subprocess
import sys


def _run(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_settle_heap_freezes_start_up_state_and_raises_the_young_threshold():
    out = _run("import gc, json\n"
               "from poselift.gc_policy import settle_heap, YOUNG_THRESHOLD\n"
               "alive = [[i] for i in range(1000)]\n"
               "frozen = settle_heap()\n"
               "print(json.dumps([frozen, gc.get_freeze_count(), gc.get_threshold()[0], YOUNG_THRESHOLD]))")
    frozen, count, young, expected = eval(out)
    assert frozen == count >= 1000  # at least the objects made before the call
    assert young == expected == 50_000


def test_settle_heap_never_lowers_a_higher_threshold_and_cycles_are_still_collected():
    out = _run("import gc, weakref\n"
               "from poselift.gc_policy import settle_heap\n"
               "gc.set_threshold(90_000, 10, 10)\n"
               "settle_heap()\n"
               "class Node: pass\n"
               "a, b = Node(), Node(); a.other, b.other = b, a\n"
               "probe = weakref.ref(a); del a, b\n"
               "gc.collect()\n"
               "print(gc.get_threshold()[0], probe() is None)")
    assert out == "90000 True"


def test_serve_settles_the_heap_before_its_loop(monkeypatch):
    from poselift.stream import apps, service

    calls = []
    monkeypatch.setattr(apps, "settle_heap", lambda: calls.append("settle"))
    real = service.PoseServer.serve_forever
    monkeypatch.setattr(service.PoseServer, "serve_forever",
                        lambda self, **kw: (calls.append("loop"), real(self, **kw))[1])
    apps.run_serve(input="tcp://127.0.0.1:*", publish="tcp://127.0.0.1:*", duration=0.05, max_streams=1)
    assert calls == ["settle", "loop"]


def test_sharded_workers_and_front_settle_the_heap_before_their_loops():
    """Checked on the source: the worker entry point runs in a spawned process, where a
    monkeypatch of the test process does not reach."""
    import inspect

    from poselift.stream import sharded

    for function in (sharded._worker_main, sharded.run_sharded):
        source = inspect.getsource(function)
        assert source.index("settle_heap()") < source.index("serve_forever(")
