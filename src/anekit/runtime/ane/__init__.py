"""The real-ANE backend: MIL compiled in memory and evaluated through AppleNeuralEngine.framework
(docs/hardware.md), in pure Python with ctypes. Written to the documented protocol and proven at its
boundary with FakeTransport; it has not yet run on Apple hardware (docs/hardware.md).

    exe = ak.compile(prog, backend="ane", target="m4")          # Apple Silicon macOS
    from anekit.runtime.ane import FakeTransport
    t = FakeTransport()                                         # anywhere: records, simulates
    exe = ak.compile(prog, backend="ane", transport=t, target="m4"); exe({"x": x})
    t.calls                                                     # [(receiver, selector, args), ...]

Modules: transport (the one interface), objc_transport (ObjCTransport, the real one),
recording (RecordingTransport), objc / foundation / iosurface (the ctypes bridge), protocol (the dispatch sequence), layout
([1, C, 1, S] surfaces), preflight (refusals before any call), programs (compile once, LRU
per process), worker / worker_main / pool (the compile-budget subprocess), fake_objc and fake
(FakeTransport), machine (what this Mac is), backend, selftest.
"""
from .backend import AneBackend, AneExecutable
from .fake import FakeTransport
from .pool import WorkerPool, pool_for, shutdown
from .objc_transport import ObjCTransport
from .recording import RecordingTransport
from .transport import Call, Transport

__all__ = ["AneBackend", "AneExecutable", "FakeTransport", "ObjCTransport", "RecordingTransport", "Transport",
           "Call", "WorkerPool", "pool_for", "shutdown"]
