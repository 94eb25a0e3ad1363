"""The one interface all Objective-C traffic to AppleNeuralEngine.framework goes through.

A transport sends selector S to a class or object with typed arguments, plus the handful of C
calls the protocol needs (dlopen, class lookup, autorelease pools, NSTemporaryDirectory,
IOSurface create / lock / unlock / base address, CFRelease, memory copies). Keeping it this
small lets `FakeTransport` implement it faithfully and record it, and lets the same protocol
code (anekit.runtime.ane.protocol) drive the real framework through `ObjCTransport`.

Arguments carry their Objective-C type code, so every objc_msgSend is made with an explicit C
signature (arm64 needs the exact prototype: objc_msgSend is not variadic there):

    t.send(model, "compileWithQoS:options:error:", u32(21), obj(options), err, returns="B")

Type codes: "@" object (None = nil), "I" uint32, "i" int32, "Q" uint64, "q" int64, "B" BOOL,
"^v" opaque pointer (an IOSurfaceRef), "r^v" input bytes (const void *), "*" C string,
"r^@" C array of objects (id const *), "^@" NSError ** out-parameter (ErrorOut).
Return codes: "@", "B", "I", "i", "Q", "q", "^v" (address), "*" (bytes or None), "v".
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, NamedTuple

from ...errors import TransportError

ARG_CODES = ("@", "I", "i", "Q", "q", "B", "^v", "r^v", "*", "r^@", "^@")
RETURN_CODES = ("@", "B", "I", "i", "Q", "q", "^v", "*", "v")

# IOSurface lock options (IOSurfaceTypes.h): 0 = read-write, 1 = kIOSurfaceLockReadOnly.
LOCK_READ_WRITE = 0
LOCK_READ_ONLY = 1
# The property names IOSurfaceCreate takes (kIOSurface<Name> in IOSurface.framework).
SURFACE_PROPERTIES = ("Width", "Height", "BytesPerElement", "BytesPerRow", "AllocSize", "PixelFormat")


@dataclass(frozen=True)
class Ref:
    """An opaque handle: an Objective-C class or object, an IOSurfaceRef, or a raw address."""
    address: int
    kind: str = "object"      # "class" | "object" | "surface"
    label: str = ""           # class name (for classes) or a short description, for call records

    def __repr__(self) -> str:
        return f"<{self.label or self.kind} 0x{self.address:x}>"


@dataclass
class Arg:
    """One typed argument of a message or C call."""
    code: str
    value: Any

    def summary(self):
        v = self.value
        if self.code == "@":
            return None if v is None else repr(v)
        if self.code == "r^v":
            return f"<{len(v)} bytes>"
        if self.code == "r^@":
            return [None if r is None else repr(r) for r in v]
        if self.code == "^v":
            return repr(v)
        if self.code == "*":
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        return v


class ErrorOut(Arg):
    """An `NSError **` out-parameter; after the call `.value` is the NSError (a Ref) or None."""

    def __init__(self):
        super().__init__("^@", None)

    def summary(self):
        return "&error"


def obj(ref: Ref | None) -> Arg:
    if ref is not None and not isinstance(ref, Ref):
        raise TransportError(f"obj() takes a Ref or None, got {type(ref).__name__}")
    return Arg("@", ref)


def _int_arg(code: str, bits: int, signed: bool):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)

    def make(v: int) -> Arg:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise TransportError(f"argument {v!r} does not fit C type '{code}'")
        return Arg(code, v)
    return make


u32 = _int_arg("I", 32, False)
i32 = _int_arg("i", 32, True)
u64 = _int_arg("Q", 64, False)
i64 = _int_arg("q", 64, True)


def boolean(v: bool) -> Arg:
    return Arg("B", bool(v))


def ptr(ref: Ref) -> Arg:
    if not isinstance(ref, Ref):
        raise TransportError(f"ptr() takes a Ref, got {type(ref).__name__}")
    return Arg("^v", ref)


def in_bytes(data: bytes) -> Arg:
    return Arg("r^v", bytes(data))


def cstring(text: str) -> Arg:
    return Arg("*", text.encode("utf-8"))


def objects(refs: list) -> Arg:
    if any(r is not None and not isinstance(r, Ref) for r in refs):
        raise TransportError("objects() takes a list of Refs")
    return Arg("r^@", list(refs))


class Call(NamedTuple):
    """One recorded call: receiver (class name, object label or "C"), selector or C function, args."""
    receiver: str
    selector: str
    args: tuple


class Transport(abc.ABC):
    """Everything the ANE protocol needs from the machine, and nothing more."""

    kind: str = ""            # "objc" (the real framework) or "fake"

    # --- loading and the Objective-C runtime ---------------------------------------------
    @abc.abstractmethod
    def load_library(self, path: str) -> None:
        """dlopen(path, RTLD_NOW); raises TransportError saying why it failed."""

    @abc.abstractmethod
    def get_class(self, name: str) -> Ref | None:
        """objc_getClass(name), None when the class does not exist."""

    @abc.abstractmethod
    def send(self, receiver: Ref, selector: str, *args: Arg, returns: str = "@"):
        """objc_msgSend(receiver, sel_registerName(selector), args...) with the signature the
        argument codes and `returns` spell. Returns a Ref or None for "@", bool for "B", int for
        integers and "^v", bytes or None for "*", None for "v"."""

    @abc.abstractmethod
    def pool_push(self) -> int:
        """objc_autoreleasePoolPush(); returns the token pool_pop needs."""

    @abc.abstractmethod
    def pool_pop(self, token: int) -> None:
        """objc_autoreleasePoolPop(token)."""

    @abc.abstractmethod
    def temporary_directory(self) -> Ref:
        """NSTemporaryDirectory(): an autoreleased NSString."""

    # --- IOSurface and memory ---------------------------------------------------------------
    @abc.abstractmethod
    def surface_create(self, properties: dict[str, int]) -> Ref | None:
        """IOSurfaceCreate with {"Width": n, ...} (keys from SURFACE_PROPERTIES); None on failure."""

    @abc.abstractmethod
    def surface_lock(self, surface: Ref, options: int) -> int:
        """IOSurfaceLock(surface, options, NULL); returns the kern_return_t (0 = success)."""

    @abc.abstractmethod
    def surface_unlock(self, surface: Ref, options: int) -> int:
        """IOSurfaceUnlock(surface, options, NULL); returns the kern_return_t."""

    @abc.abstractmethod
    def surface_base_address(self, surface: Ref) -> int:
        """IOSurfaceGetBaseAddress(surface)."""

    @abc.abstractmethod
    def surface_alloc_size(self, surface: Ref) -> int:
        """IOSurfaceGetAllocSize(surface)."""

    @abc.abstractmethod
    def cf_release(self, ref: Ref) -> None:
        """CFRelease(ref) (for the IOSurfaceRef that IOSurfaceCreate returned)."""

    @abc.abstractmethod
    def memory_write(self, address: int, data: bytes) -> None:
        """memcpy(address, data, len(data)) into memory the caller owns (a locked surface)."""

    @abc.abstractmethod
    def memory_read(self, address: int, size: int) -> bytes:
        """A copy of `size` bytes at `address` (a locked surface)."""

    # --- the machine ------------------------------------------------------------------------
    def check_target(self, target_name: str) -> None:
        """Called by the backend with the target it compiles for; the real transport accepts
        any (the framework compiles for the chip it runs on), FakeTransport adopts or checks it."""

    def describe(self) -> str:
        return self.kind


def check_host_target(target_name: str, host: str | None = None) -> None:
    """The engine in this Mac compiles for itself: a program lowered for another chip family
    (another MIL dialect, other limits) is refused before it reaches the framework."""
    from ... import targets
    from ...errors import TargetError
    from .machine import chip_target
    host = host if host is not None else chip_target()
    if host is None:     # a chip anekit does not know: let the framework decide
        return
    here, want = targets.get(host), targets.get(target_name)
    if here.family != want.family:
        raise TargetError(f"this Mac's engine is {here.name} (family {here.family}); a program for "
                          f"{want.name} (family {want.family}) cannot run on it. Leave target unset to "
                          f"use this Mac's chip, or use backend='sim' to simulate {want.name}")


class RecordingTransport(Transport):
    """Wraps another transport and records every call in `.calls` (used to prove the selector
    order against the real framework with ANEKIT_HW=1)."""

    def __init__(self, inner: Transport):
        self.inner, self.calls = inner, []
        self.kind = inner.kind

    def _rec(self, receiver, name, args):
        self.calls.append(Call(receiver, name, tuple(args)))

    def load_library(self, path):
        self._rec("C", "dlopen", (path,))
        return self.inner.load_library(path)

    def get_class(self, name):
        self._rec("C", "objc_getClass", (name,))
        return self.inner.get_class(name)

    def send(self, receiver, selector, *args, returns="@"):
        label = receiver.label if isinstance(receiver, Ref) and receiver.kind == "class" else repr(receiver)
        self._rec(label, selector, [a.summary() for a in args])
        return self.inner.send(receiver, selector, *args, returns=returns)

    def pool_push(self):
        self._rec("C", "objc_autoreleasePoolPush", ())
        return self.inner.pool_push()

    def pool_pop(self, token):
        self._rec("C", "objc_autoreleasePoolPop", ())
        return self.inner.pool_pop(token)

    def temporary_directory(self):
        self._rec("C", "NSTemporaryDirectory", ())
        return self.inner.temporary_directory()

    def surface_create(self, properties):
        self._rec("C", "IOSurfaceCreate", (dict(properties),))
        return self.inner.surface_create(properties)

    def surface_lock(self, surface, options):
        self._rec("C", "IOSurfaceLock", (repr(surface), options))
        return self.inner.surface_lock(surface, options)

    def surface_unlock(self, surface, options):
        self._rec("C", "IOSurfaceUnlock", (repr(surface), options))
        return self.inner.surface_unlock(surface, options)

    def surface_base_address(self, surface):
        self._rec("C", "IOSurfaceGetBaseAddress", (repr(surface),))
        return self.inner.surface_base_address(surface)

    def surface_alloc_size(self, surface):
        self._rec("C", "IOSurfaceGetAllocSize", (repr(surface),))
        return self.inner.surface_alloc_size(surface)

    def cf_release(self, ref):
        self._rec("C", "CFRelease", (repr(ref),))
        return self.inner.cf_release(ref)

    def memory_write(self, address, data):
        self._rec("C", "memcpy", (f"0x{address:x}", f"<{len(data)} bytes>"))
        return self.inner.memory_write(address, data)

    def memory_read(self, address, size):
        self._rec("C", "memcpy", (f"<{size} bytes>", f"0x{address:x}"))
        return self.inner.memory_read(address, size)

    def check_target(self, target_name):
        return self.inner.check_target(target_name)

    def describe(self):
        return f"recording {self.inner.describe()}"


def _check_codes(args: tuple, returns: str) -> None:
    for a in args:
        if not isinstance(a, Arg) or a.code not in ARG_CODES:
            raise TransportError(f"argument {a!r} is not a typed Arg (use obj(), u32(), ...)")
    if returns not in RETURN_CODES:
        raise TransportError(f"unknown return type code '{returns}' (one of {', '.join(RETURN_CODES)})")


class ObjCTransport(Transport):
    """The real thing: ctypes on libobjc, Foundation, CoreFoundation and IOSurface (macOS only)."""

    kind = "objc"

    def __init__(self):
        from .objc import ObjCRuntime
        from .iosurface import IOSurfaceLib
        self.rt = ObjCRuntime()          # raises BackendUnavailableError off macOS
        self.io = IOSurfaceLib()
        self._libs: dict[str, Any] = {}

    def check_target(self, target_name: str) -> None:
        check_host_target(target_name)

    def load_library(self, path):
        import ctypes
        if path in self._libs:
            return
        try:
            self._libs[path] = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            raise TransportError(f"dlopen('{path}') failed: {e}") from None

    def get_class(self, name):
        addr = self.rt.get_class(name)
        return Ref(addr, "class", name) if addr else None

    def send(self, receiver, selector, *args, returns="@"):
        _check_codes(args, returns)
        if not isinstance(receiver, Ref) or not receiver.address:
            raise TransportError(f"-{selector} sent to nil or a non-handle ({receiver!r})")
        out = self.rt.msg_send(receiver.address, selector, args, returns)
        if returns == "@":
            return Ref(out, "object", "") if out else None
        return out

    def pool_push(self):
        return self.rt.pool_push()

    def pool_pop(self, token):
        self.rt.pool_pop(token)

    def temporary_directory(self):
        return Ref(self.rt.temporary_directory(), "object", "NSString")

    def surface_create(self, properties):
        addr = self.io.create(self, properties)
        return Ref(addr, "surface", "IOSurface") if addr else None

    def surface_lock(self, surface, options):
        return self.io.lock(surface.address, options)

    def surface_unlock(self, surface, options):
        return self.io.unlock(surface.address, options)

    def surface_base_address(self, surface):
        return self.io.base_address(surface.address)

    def surface_alloc_size(self, surface):
        return self.io.alloc_size(surface.address)

    def cf_release(self, ref):
        self.io.cf_release(ref.address)

    def memory_write(self, address, data):
        import ctypes
        if not address:
            raise TransportError("write to a NULL address")
        ctypes.memmove(address, data, len(data))

    def memory_read(self, address, size):
        import ctypes
        if not address:
            raise TransportError("read from a NULL address")
        return ctypes.string_at(address, size)

    def describe(self):
        return "AppleNeuralEngine.framework via ctypes"
