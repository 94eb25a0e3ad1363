"""The worker subprocess that compiles and runs ANE programs, and its handle in the caller.

The framework leaks per compile and stops compiling after ~119 per process (docs/hardware.md), so
compiles and evaluations happen in `python -m anekit.runtime.ane.worker_main`, a child that a
WorkerPool replaces before the limit. A plain subprocess (not multiprocessing) keeps the
caller's __main__ out of the child and never forks a process that holds Objective-C state.

Protocol on the child's stdin / stdout: frames of an 8-byte little-endian length and a pickle
(private pipes between two processes of the same user). The first frame is (transport
factory, options); then requests ("compile", job) / ("run", key, inputs) / ("release", key) /
("stats",) / ("calls",) / ("shutdown",), each answered ("ok", result) or
("error", AnekitError class name, message). The child writes anything else to stderr.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time

import anekit
from ... import errors as _errors
from ...errors import ANEExecutionError, AnekitError, TransportError
from .programs import ProgramHost

_HEADER = struct.Struct("<Q")
MAX_FRAME = 1 << 34            # 16 GiB: far above any program's I/O, refuses a garbage length
START_TIMEOUT_S = 120.0


def _write_frame(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, timeout: float | None = None):
    """The next frame's object; None at end of stream; TimeoutError past `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    head = _read_exact(fd, _HEADER.size, deadline)
    if head is None:
        return None
    (n,) = _HEADER.unpack(head)
    if n > MAX_FRAME:
        raise TransportError(f"worker frame of {n} bytes exceeds {MAX_FRAME}")
    body = _read_exact(fd, n, deadline)
    if body is None:
        return None
    return pickle.loads(body)


def error_from_reply(name: str, message: str) -> AnekitError:
    """The AnekitError the worker raised, rebuilt by class name."""
    cls = getattr(_errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, AnekitError)):
        return ANEExecutionError(f"ANE worker: {name}: {message}")
    try:
        return cls(message)
    except TypeError:
        return ANEExecutionError(f"ANE worker: {name}: {message}")


# --- the child ---------------------------------------------------------------------------------

def serve(in_fd: int, out_stream) -> int:
    """The worker loop: build the transport, then answer requests until shutdown or EOF."""
    first = _read_frame(in_fd)
    if first is None:
        return 1
    factory, options = first
    try:
        transport = factory()
        host = ProgramHost(transport, compile_budget=None, max_loaded=options["max_loaded"])
    except Exception as e:  # report why the worker cannot start, then exit
        _write_frame(out_stream, ("error", type(e).__name__ if isinstance(e, AnekitError) else "TransportError",
                                  f"cannot create the transport: {e}"))
        return 1
    _write_frame(out_stream, ("ok", os.getpid()))
    while True:
        msg = _read_frame(in_fd)
        if msg is None:
            host.close()
            return 0
        op = msg[0]
        try:
            if op == "compile":
                result = host.compile(msg[1])
            elif op == "run":
                result = host.run(msg[1], msg[2])
            elif op == "release":
                result = host.release(msg[1])
            elif op == "stats":
                result = host.stats()
            elif op == "calls":
                result = list(getattr(transport, "calls", []))
            elif op == "shutdown":
                result = host.close()
                _write_frame(out_stream, ("ok", result))
                return 0
            else:
                raise TransportError(f"unknown worker request {op!r}")
            reply = ("ok", result)
        except AnekitError as e:
            reply = ("error", type(e).__name__, str(e))
        except Exception as e:  # a bug in the worker: report it as an execution error, keep serving
            reply = ("error", "ANEExecutionError", f"{type(e).__name__}: {e}")
        _write_frame(out_stream, reply)


def main() -> int:
    # Ctrl-C reaches the whole process group; the caller decides (it lets a request finish
    # and shuts the worker down cleanly), so an interrupt never lands mid framework call.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Frames go to the original stdout; everything else printed in the child goes to stderr.
    out_stream = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return serve(sys.stdin.fileno(), out_stream)


# --- the caller's handle -------------------------------------------------------------------------

class WorkerProcess:
    """One running worker: send a request, get the result or the worker's AnekitError."""

    def __init__(self, factory, max_loaded: int, timeout: float):
        try:
            payload = pickle.dumps((factory, {"max_loaded": max_loaded}))
        except Exception as e:
            raise TransportError(f"transport_factory must be picklable to reach the worker "
                                 f"(a class or a functools.partial of one): {e}") from None
        src_root = os.path.dirname(os.path.dirname(os.path.abspath(anekit.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = src_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.timeout = timeout
        self.proc = subprocess.Popen([sys.executable, "-m", "anekit.runtime.ane.worker_main"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.pid = self.proc.pid
        self.alive = True
        self._pending = False        # a request was sent whose reply has not been read
        try:
            self.proc.stdin.write(_HEADER.pack(len(payload)) + payload)
            self.proc.stdin.flush()
            self._reply(START_TIMEOUT_S)
        except BaseException:
            self.kill()
            raise

    def call(self, *request, timeout: float | None = None):
        if not self.alive:
            raise ANEExecutionError("the ANE worker has exited")
        try:
            _write_frame(self.proc.stdin, request)
        except (BrokenPipeError, OSError):
            self._died()
        self._pending = True
        try:
            reply = self._reply(timeout or self.timeout)
        except AnekitError:
            self._pending = False
            raise
        except BaseException:
            # Interrupted while the worker works: let it finish this request, then shut it
            # down cleanly (its programs unloaded, folders removed); a second interrupt kills it.
            try:
                self.close(timeout=10)
            except BaseException:
                self.kill()
            raise
        self._pending = False
        return reply

    def _reply(self, timeout: float):
        try:
            reply = _read_frame(self.proc.stdout.fileno(), timeout)
        except TimeoutError:
            self.kill()
            raise ANEExecutionError(f"the ANE worker did not answer within {timeout:.0f} s; it was stopped") from None
        if reply is None:
            self._died()
        if reply[0] == "ok":
            return reply[1]
        raise error_from_reply(reply[1], reply[2])

    def _died(self):
        self.alive = False
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        raise ANEExecutionError(f"the ANE worker exited unexpectedly (exit code {code})")

    def close(self, timeout: float = 30.0) -> list[str]:
        """Ask the worker to tear everything down and exit; kill it if it does not."""
        problems = []
        if self.alive:
            try:
                if self._pending:               # the reply to an interrupted request comes first
                    self._pending = False
                    _read_frame(self.proc.stdout.fileno(), timeout)
                problems = self.call("shutdown", timeout=timeout) or []
            except TimeoutError:
                problems = ["the worker did not finish its last request; it was stopped"]
            except AnekitError as e:
                problems = [str(e)]
        self.alive = False
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, OSError):
            self.kill()
        if self.proc.stdout:
            self.proc.stdout.close()
        return problems

    def kill(self) -> None:
        self.alive = False
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass

