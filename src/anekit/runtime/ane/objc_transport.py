"""The concrete transport: Objective-C messages and C calls through ctypes on libobjc,
Foundation, CoreFoundation and IOSurface (macOS only; elsewhere construction raises
BackendUnavailableError)."""
from __future__ import annotations

import ctypes
from typing import Any

from ...errors import TransportError
from .iosurface import IOSurfaceLib
from .machine import check_host_target
from .objc import ObjCRuntime
from .transport import Ref, Transport, check_codes


class ObjCTransport(Transport):
    """The real thing: ctypes on libobjc, Foundation, CoreFoundation and IOSurface (macOS only)."""

    kind = "objc"

    def __init__(self):
        self.rt = ObjCRuntime()          # raises BackendUnavailableError off macOS
        self.io = IOSurfaceLib()
        self._libs: dict[str, Any] = {}

    def check_target(self, target_name: str) -> None:
        check_host_target(target_name)

    def load_library(self, path):
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
        check_codes(args, returns)
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
        if not address:
            raise TransportError("write to a NULL address")
        ctypes.memmove(address, data, len(data))

    def memory_read(self, address, size):
        if not address:
            raise TransportError("read from a NULL address")
        return ctypes.string_at(address, size)

    def describe(self):
        return "AppleNeuralEngine.framework via ctypes"
