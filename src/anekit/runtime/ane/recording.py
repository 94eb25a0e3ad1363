"""A transport that wraps another and records every call (used to prove the selector order
against the real framework with ANEKIT_HW=1)."""
from __future__ import annotations

from .transport import Call, Ref, Transport


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
