"""IOSurface create / lock / unlock / base address / release through ctypes (macOS only).

The ANE reads and writes one IOSurface per program input and output (docs/hardware.md). The property
dictionary is an NSDictionary (toll-free bridged to CFDictionary) keyed by the framework's own
kIOSurface* constant strings, built through the transport so it obeys the same autorelease pool.
"""
from __future__ import annotations

import ctypes
import sys

from ...errors import BackendUnavailableError, TransportError
from .foundation import autorelease_pool, ns_dictionary, ns_number
from .transport import SURFACE_PROPERTIES, Ref

IOSURFACE = "/System/Library/Frameworks/IOSurface.framework/IOSurface"
COREFOUNDATION = "/System/Library/Frameworks/CoreFoundation.framework/CoreFoundation"


class IOSurfaceLib:
    def __init__(self):
        if sys.platform != "darwin":
            raise BackendUnavailableError("IOSurface exists only on macOS")
        try:
            self.lib = ctypes.CDLL(IOSURFACE)
            self.cf = ctypes.CDLL(COREFOUNDATION)
        except OSError as e:
            raise BackendUnavailableError(f"cannot load IOSurface / CoreFoundation: {e}") from None
        L, vp, u32 = self.lib, ctypes.c_void_p, ctypes.c_uint32
        L.IOSurfaceCreate.restype, L.IOSurfaceCreate.argtypes = vp, [vp]
        # kern_return_t IOSurfaceLock(IOSurfaceRef, IOSurfaceLockOptions, uint32_t *seed)
        L.IOSurfaceLock.restype, L.IOSurfaceLock.argtypes = ctypes.c_int32, [vp, u32, vp]
        L.IOSurfaceUnlock.restype, L.IOSurfaceUnlock.argtypes = ctypes.c_int32, [vp, u32, vp]
        L.IOSurfaceGetBaseAddress.restype, L.IOSurfaceGetBaseAddress.argtypes = vp, [vp]
        L.IOSurfaceGetAllocSize.restype, L.IOSurfaceGetAllocSize.argtypes = ctypes.c_size_t, [vp]
        self.cf.CFRelease.restype, self.cf.CFRelease.argtypes = None, [vp]
        # The key constants are `const CFStringRef` globals: read the pointer each one holds.
        self.keys = {}
        for name in SURFACE_PROPERTIES:
            try:
                self.keys[name] = ctypes.c_void_p.in_dll(L, f"kIOSurface{name}").value
            except ValueError:
                raise BackendUnavailableError(f"IOSurface.framework lacks kIOSurface{name}") from None

    def create(self, transport, properties: dict[str, int]) -> int:
        """IOSurfaceCreate from {"Width": n, ...}; the dictionary is built with Foundation calls
        through `transport` inside its own autorelease pool. Returns 0 on failure."""
        unknown = set(properties) - set(self.keys)
        if unknown:
            raise TransportError(f"unknown IOSurface properties {sorted(unknown)}")
        with autorelease_pool(transport):
            keys = [Ref(self.keys[k], "object", f"kIOSurface{k}") for k in properties]
            values = [ns_number(transport, int(v)) for v in properties.values()]
            props = ns_dictionary(transport, list(zip(keys, values)))
            return self.lib.IOSurfaceCreate(props.address) or 0

    def lock(self, surface: int, options: int) -> int:
        return self.lib.IOSurfaceLock(surface, options, None)

    def unlock(self, surface: int, options: int) -> int:
        return self.lib.IOSurfaceUnlock(surface, options, None)

    def base_address(self, surface: int) -> int:
        return self.lib.IOSurfaceGetBaseAddress(surface) or 0

    def alloc_size(self, surface: int) -> int:
        return int(self.lib.IOSurfaceGetAllocSize(surface))

    def cf_release(self, ref: int) -> None:
        if ref:
            self.cf.CFRelease(ref)

