"""The compile budget: compiles and runs move into a worker subprocess that a pool replaces
before the limit, transparently. The worker is driven with a FakeTransport factory, so the
same logic that protects a Mac from the ~119-compile leak is exercised here."""
import functools
import os
import signal
import threading
import time

import numpy as np
import pytest

import anekit as ak
from anekit.errors import ANECompileError, ANEExecutionError, TransportError
from anekit.ir.builder import build as op
from anekit.runtime.ane import AneBackend, FakeTransport, pool_for
from anekit.runtime.ane.pool import WorkerPool

TARGET = "m4"


def scaled_program(k: float):
    x = ak.input("x", (1, 2, 1, 8))
    return ak.program({"y": op("mul", x, float(k))})


def expected(x, k):
    return (x.astype(np.float32) * np.float32(np.float16(k))).astype(np.float16)


@pytest.fixture
def factory(tmp_path):
    """A FakeTransport factory unique to the test (its own temp root), so its pool is too."""
    f = functools.partial(FakeTransport, chip=TARGET, tmp_root=str(tmp_path))
    yield f
    for limit in (3, 5, 100):
        for loaded in (2, 96):
            pool_for(f, limit, loaded).close()


def compile_in_worker(prog, factory, **options):
    return ak.compile(prog, backend="ane", transport_factory=factory, target=TARGET, **options)


def test_500_distinct_programs_in_one_session(factory, tmp_path):
    x = np.random.default_rng(0).standard_normal((1, 2, 1, 8)).astype(np.float16)
    check = set(range(0, 500, 50)) | {99, 100, 101, 499}
    checked = 0
    for i in range(500):
        k = 1 + i / 512                     # 500 distinct constants: 500 distinct programs
        exe = compile_in_worker(scaled_program(k), factory)
        y = exe({"x": x})["y"]
        if i in check:
            np.testing.assert_array_equal(y, expected(x, k))
            checked += 1
        exe.close()
    stats = pool_for(factory, 100, 96).stats()
    assert sum(stats["compiles_per_worker"]) == 500
    assert max(stats["compiles_per_worker"]) <= 100      # never near the framework's ~119
    assert stats["replacements"] >= 4
    assert stats["workers_started"] == len(set(pool_for(factory, 100, 96).worker_pids)) == 5
    assert checked == len(check)
    pool_for(factory, 100, 96).close()
    assert os.listdir(tmp_path) == []                    # every worker cleaned its model folders


def test_replacement_is_transparent_for_live_executables(factory):
    x = np.random.default_rng(1).standard_normal((1, 2, 1, 8)).astype(np.float16)
    first = compile_in_worker(scaled_program(0.5), factory, compile_budget=3)
    pool = pool_for(factory, 3, 96)
    pid = pool.worker.pid
    others = [compile_in_worker(scaled_program(k), factory, compile_budget=3) for k in (2, 3, 4, 5)]
    assert pool.worker.pid != pid                         # replaced at the limit of 3
    np.testing.assert_array_equal(first({"x": x})["y"], expected(x, 0.5))   # recompiled in the new worker
    assert pool.stats()["compiles_per_worker"] == [3, 3]
    for e in others + [first]:
        e.close()


def test_same_program_compiles_once_in_the_worker(factory):
    a = compile_in_worker(scaled_program(3), factory)
    b = compile_in_worker(scaled_program(3), factory)
    assert not b.compile_info["compiled"]
    pool = pool_for(factory, 100, 96)
    assert pool.stats()["compiles_per_worker"] == [1]
    calls = pool.worker_calls()
    assert [c.selector for c in calls].count("compileWithQoS:options:error:") == 1
    a.close()
    x = np.ones((1, 2, 1, 8), np.float16)
    np.testing.assert_array_equal(b({"x": x})["y"], expected(x, 3))
    b.close()
    assert "unloadWithQoS:error:" in [c.selector for c in pool.worker_calls()]


def test_framework_errors_cross_the_process_boundary_as_their_class(factory):
    limited = functools.partial(factory, compile_limit=2)
    try:
        exes = [compile_in_worker(scaled_program(k), limited, compile_budget=5) for k in (1, 2)]
        with pytest.raises(ANECompileError, match="ANECCompile"):
            compile_in_worker(scaled_program(9), limited, compile_budget=5)
        for e in exes:
            e.close()
    finally:
        pool_for(limited, 5, 96).close()


def test_a_dead_worker_is_reported_and_replaced(factory):
    exe = compile_in_worker(scaled_program(7), factory)
    pool = pool_for(factory, 100, 96)
    os.kill(pool.worker.pid, signal.SIGKILL)
    pool.worker.proc.wait()
    x = np.ones((1, 2, 1, 8), np.float16)
    with pytest.raises(ANEExecutionError, match="exited unexpectedly"):
        exe({"x": x})
    np.testing.assert_array_equal(exe({"x": x})["y"], expected(x, 7))    # next call: new worker
    assert pool.stats()["workers_started"] == 2
    exe.close()


def test_worker_lru_unloads_past_max_loaded(factory):
    exes = [compile_in_worker(scaled_program(k), factory, max_loaded=2) for k in (1, 2, 3)]
    pool = pool_for(factory, 100, 2)
    assert pool.worker.call("stats")["loaded"] == 2
    x = np.ones((1, 2, 1, 8), np.float16)
    np.testing.assert_array_equal(exes[0]({"x": x})["y"], expected(x, 1))
    assert pool.stats()["compiles_per_worker"] == [3]                     # reloaded, not recompiled
    for e in exes:
        e.close()


def a_job():
    return AneBackend(transport=FakeTransport()).prepare(scaled_program(1), ak.targets.get(TARGET))


def test_unpicklable_factory_is_refused_clearly():
    pool = WorkerPool(lambda: FakeTransport(), 10)
    with pytest.raises(TransportError, match="picklable"):
        pool.compile(a_job())
    pool.close()


def test_a_factory_that_fails_in_the_worker_says_why():
    pool = WorkerPool(functools.partial(FakeTransport, input_order="sideways"), 10)
    try:
        with pytest.raises(TransportError, match="cannot create the transport.*sideways"):
            pool.compile(a_job())
    finally:
        pool.close()


class SlowFake(FakeTransport):
    """A fake whose evaluate takes a while (so the caller can be interrupted during it)."""

    def send(self, receiver, selector, *args, returns="@"):
        if selector == "evaluateWithQoS:options:request:error:":
            time.sleep(1.0)
        return super().send(receiver, selector, *args, returns=returns)


def test_an_interrupted_call_shuts_the_worker_down_cleanly(tmp_path, monkeypatch, python_sigint):
    # the worker imports this module to build SlowFake
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(__file__))
    slow = functools.partial(SlowFake, chip=TARGET, tmp_root=str(tmp_path))
    try:
        exe = compile_in_worker(scaled_program(5), slow)
        pool = pool_for(slow, 100, 96)
        proc = pool.worker.proc
        assert len(os.listdir(tmp_path)) == 1
        x = np.ones((1, 2, 1, 8), np.float16)
        timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            exe({"x": x})
        timer.join()
        assert proc.poll() is not None                 # the worker finished the request and exited
        assert os.listdir(tmp_path) == []              # after unloading and removing its folder
        np.testing.assert_array_equal(exe({"x": x})["y"], expected(x, 5))   # a new worker takes over
        exe.close()
    finally:
        pool_for(slow, 100, 96).close()
