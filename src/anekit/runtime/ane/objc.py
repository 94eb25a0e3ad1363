"""ctypes bridge to the Objective-C runtime: class and selector lookup, autorelease pools, and
objc_msgSend called through a function pointer cast to the exact C signature of each call.

On arm64 objc_msgSend must be called with the callee's real prototype (variadic arguments are
passed differently), so each distinct (return type, argument types) pair gets its own CFUNCTYPE,
built once and cached. Nothing here runs off macOS; `ctype_for` and `prototype` are pure and
tested on every platform.
"""
from __future__ import annotations

import ctypes
import platform
import sys

from ...errors import BackendUnavailableError, TransportError
from .transport import Ref

LIBOBJC = "/usr/lib/libobjc.A.dylib"
FOUNDATION = "/System/Library/Frameworks/Foundation.framework/Foundation"

# BOOL is `bool` on arm64 and `signed char` on x86_64 (objc.h, OBJC_BOOL_IS_BOOL).
_BOOL = ctypes.c_bool if platform.machine() == "arm64" else ctypes.c_byte

_TYPES = {
    "@": ctypes.c_void_p, "^v": ctypes.c_void_p, "r^v": ctypes.c_void_p, "*": ctypes.c_char_p,
    "I": ctypes.c_uint32, "i": ctypes.c_int32, "Q": ctypes.c_uint64, "q": ctypes.c_int64,
    "B": _BOOL, "r^@": ctypes.c_void_p, "^@": ctypes.POINTER(ctypes.c_void_p), "v": None,
}


def ctype_for(code: str):
    """The ctypes type for one Objective-C type code (see anekit.runtime.ane.transport)."""
    if code not in _TYPES:
        raise TransportError(f"no C type for Objective-C type code '{code}'")
    return _TYPES[code]


_PROTOTYPES: dict[tuple, type] = {}


def prototype(returns: str, arg_codes: tuple[str, ...]):
    """CFUNCTYPE(ret, id self, SEL _cmd, args...) for one message signature (cached)."""
    key = (returns, arg_codes)
    proto = _PROTOTYPES.get(key)
    if proto is None:
        proto = ctypes.CFUNCTYPE(ctype_for(returns), ctypes.c_void_p, ctypes.c_void_p,
                                 *(ctype_for(c) for c in arg_codes))
        _PROTOTYPES[key] = proto
    return proto


def c_arguments(args) -> tuple[list, list]:
    """C values for typed Args, plus the buffers that must stay alive for the call."""
    values, keep = [], []
    for a in args:
        if a.code == "@":
            values.append(a.value.address if a.value is not None else None)
        elif a.code == "^v":
            values.append(a.value.address)
        elif a.code == "r^v":
            buf = ctypes.create_string_buffer(a.value, len(a.value)) if a.value else ctypes.create_string_buffer(1)
            keep.append(buf)
            values.append(ctypes.addressof(buf))
        elif a.code == "r^@":
            arr = (ctypes.c_void_p * max(len(a.value), 1))(*[r.address if r is not None else None for r in a.value])
            keep.append(arr)
            values.append(ctypes.addressof(arr))
        elif a.code == "^@":
            slot = ctypes.c_void_p(None)
            keep.append(slot)
            values.append(ctypes.byref(slot))
        else:
            values.append(a.value)
    return values, keep


class ObjCRuntime:
    """libobjc loaded through ctypes (macOS only)."""

    def __init__(self, libobjc: str = LIBOBJC):
        if sys.platform != "darwin":
            raise BackendUnavailableError(
                f"the Objective-C runtime exists only on macOS (this is {platform.system()})")
        try:
            self.lib = ctypes.CDLL(libobjc)
            # Foundation registers NSString, NSData, ... and exports NSTemporaryDirectory.
            self.foundation = ctypes.CDLL(FOUNDATION)
        except OSError as e:
            raise BackendUnavailableError(f"cannot load the Objective-C runtime: {e}") from None
        L = self.lib
        L.objc_getClass.restype, L.objc_getClass.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
        L.sel_registerName.restype, L.sel_registerName.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
        L.objc_autoreleasePoolPush.restype, L.objc_autoreleasePoolPush.argtypes = ctypes.c_void_p, []
        L.objc_autoreleasePoolPop.restype, L.objc_autoreleasePoolPop.argtypes = None, [ctypes.c_void_p]
        self.foundation.NSTemporaryDirectory.restype = ctypes.c_void_p
        self.foundation.NSTemporaryDirectory.argtypes = []
        self._msgsend = ctypes.cast(L.objc_msgSend, ctypes.c_void_p).value
        self._selectors: dict[str, int] = {}

    def get_class(self, name: str) -> int | None:
        return self.lib.objc_getClass(name.encode("ascii")) or None

    def selector(self, name: str) -> int:
        sel = self._selectors.get(name)
        if sel is None:
            sel = self.lib.sel_registerName(name.encode("ascii"))
            self._selectors[name] = sel
        return sel

    def msg_send(self, receiver: int, selector: str, args, returns: str):
        """Send with the signature the typed args spell; fills ErrorOut args after the call."""
        codes = tuple(a.code for a in args)
        if selector.count(":") != len(args):
            raise TransportError(f"selector '{selector}' takes {selector.count(':')} arguments, got {len(args)}")
        fn = prototype(returns, codes)(self._msgsend)
        values, keep = c_arguments(args)
        out = fn(receiver, self.selector(selector), *values)
        slots = iter(k for k in keep if isinstance(k, ctypes.c_void_p))
        for a in args:
            if a.code == "^@":
                addr = next(slots).value
                a.value = Ref(addr, "object", "NSError") if addr else None
        if returns == "B":
            return bool(out)
        if returns == "^v":
            return out or 0
        return out

    def pool_push(self) -> int:
        return self.lib.objc_autoreleasePoolPush()

    def pool_pop(self, token: int) -> None:
        self.lib.objc_autoreleasePoolPop(token)

    def temporary_directory(self) -> int:
        return self.foundation.NSTemporaryDirectory()
