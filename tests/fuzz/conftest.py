"""The fuzz suite's harness: hypothesis profiles and a guard around every case.

Profiles (pick with ANEKIT_FUZZ): `quick` (default, CI: the whole suite in well under a
minute on two cores, derandomized so CI is reproducible) and `long` (by hand, thousands of
cases per test), e.g.

    ANEKIT_FUZZ=long ANEKIT_FUZZ_REPORT=fuzz.json pytest -p no:cacheprovider tests/fuzz

Every case runs through `guard.run(fn)` in a fresh working folder (the current directory
while it runs). The guard fails the case on:
  - an exception that is not an AnekitError (a crash),
  - more than 10 s (SIGALRM interrupts even a blocking open() of a FIFO),
  - more than 2 GiB allocated at peak (tracemalloc sees Python and numpy allocations),
  - any file created, written, renamed, linked or removed outside the working folder
    (a Python audit hook watches open/os.*/shutil.* while the case runs).
ANEKIT_FUZZ_REPORT=PATH writes the totals (cases, crashes, max seconds, max bytes) as JSON.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import tracemalloc

import pytest
from hypothesis import HealthCheck, settings

from anekit.errors import AnekitError

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))          # tests/: shared corpora (test_mil_roundtrip, ...)

PROFILE = os.environ.get("ANEKIT_FUZZ", "quick")
_COMMON = dict(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
settings.register_profile("quick", max_examples=40, derandomize=True, database=None, **_COMMON)
settings.register_profile("long", max_examples=int(os.environ.get("ANEKIT_FUZZ_EXAMPLES", "1500")), **_COMMON)
FUZZ = None  # set below
if PROFILE not in ("quick", "long"):
    raise pytest.UsageError(f"ANEKIT_FUZZ={PROFILE!r}: expected 'quick' or 'long'")
FUZZ = settings.get_profile(PROFILE)   # applied per test: loading it would change every other test

TIME_LIMIT_S = 10.0
MEMORY_LIMIT = 2 << 30

STATS = {"profile": PROFILE, "cases": 0, "anekit_errors": 0, "crashes": 0, "hangs": 0, "memory": 0, "escapes": 0,
         "max_seconds": 0.0, "max_bytes": 0, "per_test": {}}


class FuzzTimeout(BaseException):
    """Raised by SIGALRM inside a case; a BaseException so `except Exception` cannot hide it."""


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_WATCHED = {"os.mkdir": (0,), "os.rename": (0, 1), "os.remove": (0,), "os.rmdir": (0,), "os.symlink": (1,),
            "os.link": (1,), "os.truncate": (0,), "os.chmod": (0,), "os.utime": (0,), "os.chown": (0,),
            "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.move": (1,), "os.mkfifo": (0,)}


_REMOVALS = ("os.remove", "os.rmdir", "shutil.rmtree")


def _exists(path) -> bool:
    try:
        return os.path.lexists(path)
    except (TypeError, ValueError):
        return True


class _Watch:
    root: str | None = None
    allowed: tuple = ()
    escapes: list = []


def _inside(path) -> bool:
    if isinstance(path, int) or path is None:
        return True
    try:
        p = os.fsdecode(os.fspath(path))
    except TypeError:
        return True
    full = os.path.realpath(os.path.join(os.getcwd(), p)) if _Watch.root else p
    if "__pycache__" in full.split(os.sep) or full == os.devnull:
        return True
    return any(full == r or full.startswith(r + os.sep) for r in (_Watch.root, *_Watch.allowed))


def _audit(event: str, args) -> None:
    if _Watch.root is None:
        return
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS)
        if writes and not _inside(path):
            _Watch.escapes.append((event, path))
    elif event in _WATCHED:
        for i in _WATCHED[event]:
            if i >= len(args) or _inside(args[i]):
                continue
            if event in _REMOVALS and not _exists(args[i]):
                continue                 # a late cleanup of a folder already gone touches nothing
            _Watch.escapes.append((event, args[i]))


sys.addaudithook(_audit)


def _on_alarm(signum, frame):
    where = [f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in traceback.extract_stack(frame)
             if "anekit" in f.filename][-4:]
    raise FuzzTimeout(" <- ".join(reversed(where)) or "outside anekit")


class Guard:
    """Runs fuzz cases under the limits above; one per test."""

    def __init__(self, name: str, base: str):
        self.name, self.base = name, base
        self.stats = STATS["per_test"].setdefault(name, {"cases": 0, "anekit_errors": 0, "max_seconds": 0.0,
                                                         "max_bytes": 0})

    @contextlib.contextmanager
    def folder(self):
        """A fresh working folder, removed afterwards."""
        path = tempfile.mkdtemp(prefix="case-", dir=self.base)
        try:
            yield os.path.realpath(path)
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def run(self, fn, work: str, label: str = ""):
        """fn() with `work` as the current folder; returns its value or the AnekitError it raised."""
        old_cwd = os.getcwd()
        old_handler = signal.signal(signal.SIGALRM, _on_alarm)
        _Watch.escapes = []
        tracemalloc.start()
        start = time.perf_counter()
        outcome = None
        old_tmp = tempfile.tempdir
        try:
            os.chdir(work)
            tempfile.tempdir = work     # scratch folders (the fake ANE's model folders) go here too
            _Watch.root = work
            signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    outcome = fn()
            except AnekitError as e:
                outcome = e
            except FuzzTimeout as e:
                STATS["hangs"] += 1
                raise AssertionError(f"hang: {self.name} case {label or ''} ran past {TIME_LIMIT_S:g} s, "
                                     f"stopped in {e}") from None
            except BaseException:
                STATS["crashes"] += 1
                raise
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)
            tempfile.tempdir = old_tmp
            _Watch.root = None
            elapsed = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            os.chdir(old_cwd)
            self._count(elapsed, peak, outcome)
        if peak > MEMORY_LIMIT:
            STATS["memory"] += 1
            raise AssertionError(f"{self.name}: case allocated {peak / 2**30:.2f} GiB at peak")
        if _Watch.escapes:
            STATS["escapes"] += 1
            raise AssertionError(f"{self.name}: touched files outside the working folder: {_Watch.escapes[:3]}")
        return outcome

    def _count(self, elapsed: float, peak: int, outcome) -> None:
        for d in (STATS, self.stats):
            d["cases"] += 1
            d["anekit_errors"] += isinstance(outcome, AnekitError)
            d["max_seconds"] = max(d["max_seconds"], elapsed)
            d["max_bytes"] = max(d["max_bytes"], peak)


@pytest.fixture(scope="session")
def fuzz_base(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("fuzz"))
    os.environ.setdefault("MPLCONFIGDIR", os.path.join(base, "mpl"))
    _Watch.allowed = (os.path.realpath(os.environ["MPLCONFIGDIR"]),)
    return base


@pytest.fixture
def guard(request, fuzz_base):
    return Guard(request.node.originalname or request.node.name, fuzz_base)


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("ANEKIT_FUZZ_REPORT")
    if path and STATS["cases"]:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(STATS, f, indent=2)
