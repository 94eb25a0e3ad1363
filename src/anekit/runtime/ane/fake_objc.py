"""The Objective-C side of FakeTransport: a small object model with retain counts,
autorelease pools and deallocation, the Foundation classes the protocol uses, IOSurfaces and
their memory, and the call record. anekit.runtime.ane.fake adds the framework's classes.

It catches what would crash or leak in a real process: a message to a deallocated object, an
over-release, an object autoreleased with no pool, surface memory touched without the right
lock. Would-be crashes raise TransportError; leaks and misuse go to `.problems`.
"""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import weakref

from ...errors import TransportError
from .transport import SURFACE_PROPERTIES, Call, Ref, Transport

# The documented signatures (argument codes, return code) of the Foundation messages used,
# stated here independently of the code that sends them, so a wrong C type fails the tests.
FOUNDATION_CLASS_SIGNATURES = {
    ("NSString", "stringWithUTF8String:"): (("*",), "@"),
    ("NSData", "dataWithBytes:length:"): (("r^v", "Q"), "@"),
    ("NSNumber", "numberWithUnsignedLongLong:"): (("Q",), "@"),
    ("NSNumber", "numberWithLongLong:"): (("q",), "@"),
    ("NSArray", "arrayWithObjects:count:"): (("r^@", "Q"), "@"),
    ("NSDictionary", "dictionaryWithObjects:forKeys:count:"): (("r^@", "r^@", "Q"), "@"),
}
FOUNDATION_INSTANCE_SIGNATURES = {
    "retain": ((), "@"), "release": ((), "v"), "description": ((), "@"), "UTF8String": ((), "*"),
    "bytes": ((), "^v"), "length": ((), "Q"), "longLongValue": ((), "q"), "count": ((), "Q"),
    "objectAtIndex:": (("Q",), "@"), "objectForKey:": (("@",), "@"),
}
# Instance selectors only some classes answer (any other selector: every NSObject).
FOUNDATION_ANSWERED_BY = {
    "UTF8String": ("NSString",), "bytes": ("NSData",), "length": ("NSData", "NSString"),
    "longLongValue": ("NSNumber",), "count": ("NSArray", "NSDictionary"), "objectAtIndex:": ("NSArray",),
    "objectForKey:": ("NSDictionary",),
}
FOUNDATION_CLASSES = ("NSObject", "NSString", "NSData", "NSNumber", "NSArray", "NSDictionary", "NSError")
KERN_FAILURE = 0xE00002BC     # kIOReturnError


class Obj:
    """A fake Objective-C (or CF) object: class name, value, retain count, retained children."""

    __slots__ = ("addr", "cls", "value", "rc", "owned", "seq", "dead")

    def __init__(self, addr: int, cls: str, value, seq: int, owned=()):
        self.addr, self.cls, self.value, self.seq = addr, cls, value, seq
        self.rc, self.owned, self.dead = 1, list(owned), False

    @property
    def label(self) -> str:
        return f"<{self.cls}#{self.seq}>"


class Surface(Obj):
    __slots__ = ("props", "memory", "base", "lock")


class Failure(Exception):
    """A call that fails the way the framework fails: NO plus an NSError, or nil."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text


def error_description(text: str) -> str:
    """An NSError's -description, in the framework's shape."""
    return (f'Error Domain=com.apple.appleneuralengine Code=-1 "{text}" '
            f'UserInfo={{NSLocalizedDescription={text}}}')


class FakeObjC(Transport):
    """Foundation, IOSurface and the object model; subclasses add classes through the
    `class_signatures` / `instance_signatures` / `answered_by` tables and two hooks."""

    kind = "fake"
    libraries: tuple[str, ...] = ()                 # what dlopen accepts
    private_classes: tuple[str, ...] = ()           # classes that exist once a library is loaded
    class_signatures: dict = {}
    instance_signatures: dict = {}
    answered_by: dict = {}

    def __init__(self, fail: dict | None = None, tmp_root: str | None = None):
        self.fail = dict(fail or {})
        self.calls: list[Call] = []
        self.problems: list[str] = []
        self._addr = itertools.count(0x10_0000_0000, 0x1000)
        self._seq = itertools.count(1)
        self._classes = {next(self._addr): name for name in FOUNDATION_CLASSES + self.private_classes}
        self._class_refs = {name: Ref(a, "class", name) for a, name in self._classes.items()}
        self._class_sigs = {**FOUNDATION_CLASS_SIGNATURES, **self.class_signatures}
        self._instance_sigs = {**FOUNDATION_INSTANCE_SIGNATURES, **self.instance_signatures}
        self._answered_by = {**FOUNDATION_ANSWERED_BY, **self.answered_by}
        self._objects: dict[int, Obj] = {}
        self._memory: dict[int, Obj] = {}           # base address -> surface or NSData
        self._data_base: dict[int, int] = {}        # NSData object address -> its bytes' address
        self._pools: list[list[Obj]] = []
        self._counts: dict[str, int] = {}
        self._libraries: set[str] = set()
        self._tmp_root = tmp_root

    # --- hooks for the framework's classes --------------------------------------------------
    def framework_class_message(self, cls: str, selector: str, args) -> Obj | None:
        raise TransportError(f"+[{cls} {selector}] is not modelled")

    def framework_instance_message(self, o: Obj, selector: str, args):
        raise TransportError(f"-[{o.cls} {selector}] is not modelled")

    def on_dealloc(self, o: Obj) -> None:
        """Called when an object's retain count reaches zero."""

    def loaded_labels(self) -> list[str]:
        return []

    # --- bookkeeping -------------------------------------------------------------------------
    @property
    def tmp_root(self) -> str:
        """What NSTemporaryDirectory() returns for this fake (a private folder by default)."""
        if self._tmp_root is None:
            self._tmp_root = tempfile.mkdtemp(prefix="anekit-fake-ane-")
            weakref.finalize(self, shutil.rmtree, self._tmp_root, True)
        return self._tmp_root

    def _record(self, receiver: str, name: str, args) -> None:
        self.calls.append(Call(receiver, name, tuple(args)))

    def _injected(self, name: str):
        """(True, text) when `fail` names this call or its current occurrence ("name#N")."""
        n = self._counts[name] = self._counts.get(name, 0) + 1
        for key in (f"{name}#{n}", name):
            if key in self.fail:
                return True, self.fail[key]
        return False, None

    def new(self, cls: str, value=None, owned=(), autorelease=True, kind=Obj) -> Obj:
        """A new object (retaining `owned`), autoreleased like a +factory method's result."""
        o = kind(next(self._addr), cls, value, next(self._seq), owned)
        for child in o.owned:
            child.rc += 1
        self._objects[o.addr] = o
        if autorelease:
            if self._pools:
                self._pools[-1].append(o)
            else:
                self.problems.append(f"{o.label} autoreleased with no pool in place (leaks)")
        return o

    def _release(self, o: Obj) -> None:
        if o.dead:
            raise TransportError(f"release of deallocated {o.label} (would crash)")
        o.rc -= 1
        if o.rc > 0:
            return
        o.dead = True
        self.on_dealloc(o)
        for child in o.owned:
            self._release(child)
        o.owned = []

    def ref(self, o: Obj | None) -> Ref | None:
        if o is None:
            return None
        return Ref(o.addr, "surface" if isinstance(o, Surface) else "object", o.label)

    def lookup(self, ref, what: str) -> Obj:
        if not isinstance(ref, Ref):
            raise TransportError(f"{what}: {ref!r} is not a handle")
        o = self._objects.get(ref.address)
        if o is None:
            raise TransportError(f"{what}: 0x{ref.address:x} is not a live object of this transport")
        if o.dead:
            raise TransportError(f"{what}: message to deallocated {o.label} (would crash)")
        return o

    def arg_obj(self, arg, what: str) -> Obj | None:
        return None if arg.value is None else self.lookup(arg.value, what)

    def summary(self, arg):
        """A readable args summary: Foundation values spelled out, other objects as <Class#n>."""
        if arg.code == "@":
            return None if arg.value is None else self._describe(self._objects.get(arg.value.address))
        if arg.code == "r^@":
            return [None if r is None else self._describe(self._objects.get(r.address)) for r in arg.value]
        if arg.code == "^v":
            o = self._objects.get(arg.value.address)
            return o.label if o else repr(arg.value)
        return arg.summary()

    def _describe(self, o: Obj | None):
        if o is None:
            return "<unknown>"
        if o.cls in ("NSString", "NSNumber"):
            return o.value
        if o.cls == "NSData":
            return f"<NSData {len(o.value)} bytes>"
        if o.cls == "NSArray":
            return [self._describe(x) for x in o.value]
        if o.cls == "NSDictionary":
            return {self._describe(k): self._describe(v) for k, v in o.value}
        return o.label

    def live(self) -> dict:
        """What is still allocated: objects, surfaces, loaded models, model folders."""
        objs = [o for o in self._objects.values() if not o.dead]
        root = self._tmp_root
        folders = sorted(os.listdir(root)) if root and os.path.isdir(root) else []
        return {"objects": [o.label for o in objs if not isinstance(o, Surface)],
                "surfaces": [o.label for o in objs if isinstance(o, Surface)],
                "loaded": self.loaded_labels(), "temp_folders": folders}

    def selectors(self) -> list[str]:
        """The selectors and C functions called, in order."""
        return [c.selector for c in self.calls]

    # --- loading and the runtime -----------------------------------------------------------------
    def load_library(self, path):
        self._record("C", "dlopen", (path,))
        failed, text = self._injected("dlopen")
        if failed or path not in self.libraries:
            raise TransportError(f"dlopen('{path}') failed: {text or 'image not found'}")
        self._libraries.add(path)

    def get_class(self, name):
        self._record("C", "objc_getClass", (name,))
        failed, _ = self._injected("objc_getClass")
        if failed:
            return None
        if name in self.private_classes and not self._libraries:
            return None          # private classes exist only once their framework is loaded
        return self._class_refs.get(name)

    def pool_push(self):
        self._record("C", "objc_autoreleasePoolPush", ())
        self._pools.append([])
        return len(self._pools)

    def pool_pop(self, token):
        self._record("C", "objc_autoreleasePoolPop", ())
        if token != len(self._pools):
            self.problems.append(f"autorelease pool {token} popped while {len(self._pools)} are pushed")
        while len(self._pools) >= token and self._pools:
            for o in self._pools.pop():
                if o.dead:
                    self.problems.append(f"{o.label} over-released: its pool found it deallocated (would crash)")
                else:
                    self._release(o)

    def temporary_directory(self):
        self._record("C", "NSTemporaryDirectory", ())
        return self.ref(self.new("NSString", self.tmp_root))

    # --- messages ---------------------------------------------------------------------------------
    def send(self, receiver, selector, *args, returns="@"):
        if not isinstance(receiver, Ref):
            raise TransportError(f"-{selector} sent to {receiver!r}, not a handle")
        is_class = receiver.address in self._classes
        label = self._classes[receiver.address] if is_class else (
            self._objects[receiver.address].label if receiver.address in self._objects else repr(receiver))
        self._record(label, selector, [self.summary(a) for a in args])
        if is_class:
            cls, target = self._classes[receiver.address], None
            sig = self._class_sigs.get((cls, selector))
        else:
            target = self.lookup(receiver, f"-{selector}")
            cls = target.cls
            sig = self._instance_sigs.get(selector) if cls in self._answered_by.get(selector, (cls,)) else None
        if sig is None:
            raise TransportError(f"{'+' if is_class else '-'}[{cls} {selector}]: unrecognized selector")
        codes = tuple(a.code for a in args)
        if codes != sig[0] or returns != sig[1]:
            raise TransportError(f"[{cls} {selector}] sent with signature ({', '.join(codes)}) -> {returns}; "
                                 f"it takes ({', '.join(sig[0])}) -> {sig[1]}")
        failed, text = self._injected(selector)
        try:
            if failed:
                raise Failure(text)
            if is_class:
                return self.ref(self._class_message(cls, selector, args))
            return self._instance_message(target, selector, args)
        except Failure as f:
            if sig[1] == "B":
                if f.text is not None:
                    args[-1].value = self.ref(self.new("NSError", error_description(f.text)))
                return False
            return None

    def _class_message(self, cls, selector, args) -> Obj | None:
        v = [a.value for a in args]
        if cls == "NSString":
            return self.new("NSString", v[0].decode("utf-8"))
        if cls == "NSData":
            if len(v[0]) != v[1]:
                raise TransportError(f"dataWithBytes:length: given {len(v[0])} bytes with length {v[1]}")
            return self.new("NSData", bytes(v[0]))
        if cls == "NSNumber":
            return self.new("NSNumber", int(v[0]))
        if cls == "NSArray":
            items = [self.lookup(r, "arrayWithObjects:count:") for r in v[0][:v[1]]]
            if len(items) != v[1]:
                raise TransportError("arrayWithObjects:count: count exceeds the array")
            return self.new("NSArray", items, owned=items)
        if cls == "NSDictionary":
            values = [self.lookup(r, "dictionaryWithObjects:forKeys:count:") for r in v[0]]
            keys = [self.lookup(r, "dictionaryWithObjects:forKeys:count:") for r in v[1]]
            if not len(values) == len(keys) == v[2]:
                raise TransportError("dictionaryWithObjects:forKeys:count: lengths disagree")
            return self.new("NSDictionary", list(zip(keys, values)), owned=keys + values)
        return self.framework_class_message(cls, selector, args)

    def _instance_message(self, o: Obj, selector, args):
        if selector == "retain":
            o.rc += 1
            return self.ref(o)
        if selector == "release":
            self._release(o)
            return None
        if selector == "description":
            text = o.value if o.cls in ("NSString", "NSError") else o.label
            return self.ref(self.new("NSString", str(text)))
        if selector == "UTF8String":
            return o.value.encode("utf-8")
        if selector == "length":
            return len(o.value) if o.cls == "NSData" else len(o.value.encode("utf-16-le")) // 2
        if selector == "bytes":
            if o.addr not in self._data_base:
                base = self._data_base[o.addr] = next(self._addr)
                self._memory[base] = o
            return self._data_base[o.addr]
        if selector == "longLongValue":
            return int(o.value)
        if selector == "count":
            return len(o.value)
        if selector == "objectAtIndex:":
            if not 0 <= args[0].value < len(o.value):
                raise TransportError(f"-[NSArray objectAtIndex:]: index {args[0].value} beyond bounds (would throw)")
            return self.ref(o.value[args[0].value])
        if selector == "objectForKey:":
            key = self.arg_obj(args[0], selector)
            for k, v in o.value:
                if key is not None and k.cls == key.cls and k.value == key.value:
                    return self.ref(v)
            return None
        return self.framework_instance_message(o, selector, args)

    # --- IOSurface and memory ------------------------------------------------------------------------
    def surface_create(self, properties):
        props = dict(properties)
        self._record("C", "IOSurfaceCreate", (props,))
        failed, _ = self._injected("IOSurfaceCreate")
        if failed or set(props) - set(SURFACE_PROPERTIES) or "AllocSize" not in props:
            return None
        expected = {"Height": 1, "BytesPerElement": 1, "PixelFormat": 0,
                    "Width": props["AllocSize"], "BytesPerRow": props["AllocSize"]}
        wrong = {k: props.get(k) for k, v in expected.items() if props.get(k) != v}
        if wrong:
            self.problems.append(f"IOSurface properties {wrong} differ from docs/hardware.md "
                                 f"(Width = BytesPerRow = AllocSize, Height 1, BytesPerElement 1, PixelFormat 0)")
        s = self.new("IOSurface", None, autorelease=False, kind=Surface)
        s.props, s.memory, s.lock = props, bytearray(int(props["AllocSize"])), None
        s.base = next(self._addr)
        self._memory[s.base] = s
        return self.ref(s)

    def _surface(self, ref, what) -> Surface:
        s = self.lookup(ref, what)
        if not isinstance(s, Surface):
            raise TransportError(f"{what}: {s.label} is not an IOSurface")
        return s

    def surface_lock(self, surface, options):
        s = self._surface(surface, "IOSurfaceLock")
        self._record("C", "IOSurfaceLock", (s.label, options))
        failed, _ = self._injected("IOSurfaceLock")
        if failed:
            return KERN_FAILURE
        if s.lock is not None:
            self.problems.append(f"{s.label} locked twice")
        s.lock = options
        return 0

    def surface_unlock(self, surface, options):
        s = self._surface(surface, "IOSurfaceUnlock")
        self._record("C", "IOSurfaceUnlock", (s.label, options))
        if s.lock is None:
            self.problems.append(f"{s.label} unlocked without a lock")
        elif s.lock != options:
            self.problems.append(f"{s.label} locked with options {s.lock}, unlocked with {options}")
        s.lock = None
        return 0

    def surface_base_address(self, surface):
        s = self._surface(surface, "IOSurfaceGetBaseAddress")
        self._record("C", "IOSurfaceGetBaseAddress", (s.label,))
        return s.base

    def surface_alloc_size(self, surface):
        s = self._surface(surface, "IOSurfaceGetAllocSize")
        self._record("C", "IOSurfaceGetAllocSize", (s.label,))
        return len(s.memory)

    def cf_release(self, ref):
        o = self.lookup(ref, "CFRelease")
        self._record("C", "CFRelease", (o.label,))
        self._release(o)

    def _memory_at(self, address: int, size: int, what: str) -> Obj:
        s = self._memory.get(address)
        if s is None:
            raise TransportError(f"{what} at 0x{address:x}: not the start of a surface or NSData (would crash)")
        if s.dead:
            raise TransportError(f"{what}: {s.label} was released (use after free)")
        held = len(s.memory) if isinstance(s, Surface) else len(s.value)
        if size > held:
            raise TransportError(f"{what} of {size} bytes overruns {s.label} ({held} bytes)")
        return s

    def memory_write(self, address, data):
        s = self._memory_at(address, len(data), "memcpy into memory")
        self._record("C", "memcpy", (s.label, f"<{len(data)} bytes>"))
        if not isinstance(s, Surface):
            raise TransportError(f"write into {s.label}, which is immutable (would crash)")
        if s.lock != 0:
            raise TransportError(f"write to {s.label} without a read-write lock")
        s.memory[:len(data)] = data

    def memory_read(self, address, size):
        s = self._memory_at(address, size, "memcpy from memory")
        self._record("C", "memcpy", (f"<{size} bytes>", s.label))
        if not isinstance(s, Surface):
            return bytes(s.value[:size])
        if s.lock is None:
            self.problems.append(f"read of {s.label} without a lock")
        return bytes(s.memory[:size])
