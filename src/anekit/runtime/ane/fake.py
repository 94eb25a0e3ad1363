"""FakeTransport: the ANE framework's behaviour at the transport boundary, on any machine.

It records every call in `.calls` as (receiver, selector or C function, args summary), keeps a
small Objective-C object model (retain counts, autorelease pools, deallocation), and behaves
like AppleNeuralEngine.framework where the protocol depends on it (brief §2, seed 001):

- `modelWithMILText:weights:optionsPlist:` needs NSData text and an NSDictionary of
  {"@model_path/...": {"offset": NSNumber, "data": NSData}}; nil weights give nil (the real
  framework fails silently there).
- `hexStringIdentifier` is a content hash; compile looks for model.mil and each weights file
  in NSTemporaryDirectory()/<identifier>/ and fails (NO plus an NSError) when one is missing,
  when anekit's MIL parser rejects the text, or after `compile_limit` compiles (119, the
  per-process limit of brief §2).
- load fails past `load_limit` loaded programs (~128, guide ch. 14).
- evaluate reads the input surfaces ([1, C, 1, S], fp16 or fp32 as the MIL declares), runs
  anekit's simulator with the chip's numerics, and writes the output surfaces.

It also catches what would crash or leak on a Mac: a message to a deallocated object, an
over-release, an object autoreleased with no pool, surface memory touched while unlocked, a
surface locked during evaluate, a model deallocated while loaded. Those go to `.problems`
(or raise TransportError where the real process would crash); `.live()` lists what is still
allocated. `fail={"loadWithQoS:options:error:": "text", "IOSurfaceCreate#2": None}` makes the
named call (or its N-th occurrence) fail, with that error text, to test every error path.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import tempfile
import weakref

import numpy as np

from ...errors import AnekitError, TargetError, TransportError
from .protocol import DESCRIPTOR, FRAMEWORK, MODEL, MODEL_PATH, REQUEST, SURFACE_OBJECT
from .transport import SURFACE_PROPERTIES, Call, Ref, Transport

_KNOWN_LIBRARIES = (FRAMEWORK,)
_CLASSES = ("NSObject", "NSString", "NSData", "NSNumber", "NSArray", "NSDictionary", "NSError",
            DESCRIPTOR, MODEL, REQUEST, SURFACE_OBJECT, "_ANEClient")
_REQUEST_SEL = "requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex:"

# The documented signatures (argument codes, return code), stated here independently of the
# code that sends them, so a wrong C type in the protocol fails the fake's tests.
CLASS_SIGNATURES = {
    ("NSString", "stringWithUTF8String:"): (("*",), "@"),
    ("NSData", "dataWithBytes:length:"): (("r^v", "Q"), "@"),
    ("NSNumber", "numberWithUnsignedLongLong:"): (("Q",), "@"),
    ("NSNumber", "numberWithLongLong:"): (("q",), "@"),
    ("NSArray", "arrayWithObjects:count:"): (("r^@", "Q"), "@"),
    ("NSDictionary", "dictionaryWithObjects:forKeys:count:"): (("r^@", "r^@", "Q"), "@"),
    (DESCRIPTOR, "modelWithMILText:weights:optionsPlist:"): (("@", "@", "@"), "@"),
    (MODEL, "inMemoryModelWithDescriptor:"): (("@",), "@"),
    (SURFACE_OBJECT, "objectWithIOSurface:"): (("^v",), "@"),
    (REQUEST, _REQUEST_SEL): (("@",) * 7, "@"),
}
INSTANCE_SIGNATURES = {
    "retain": ((), "@"), "release": ((), "v"), "description": ((), "@"), "UTF8String": ((), "*"),
    "hexStringIdentifier": ((), "@"),
    "compileWithQoS:options:error:": (("I", "@", "^@"), "B"),
    "loadWithQoS:options:error:": (("I", "@", "^@"), "B"),
    "evaluateWithQoS:options:request:error:": (("I", "@", "@", "^@"), "B"),
    "unloadWithQoS:error:": (("I", "^@"), "B"),
    "bytes": ((), "^v"), "length": ((), "Q"), "longLongValue": ((), "q"), "count": ((), "Q"),
    "objectAtIndex:": (("Q",), "@"), "objectForKey:": (("@",), "@"),
}
# Instance selectors that only some classes answer (the rest: every NSObject).
_ANSWERED_BY = {
    **{sel: (MODEL,) for sel in ("hexStringIdentifier", "compileWithQoS:options:error:", "loadWithQoS:options:error:",
                                 "evaluateWithQoS:options:request:error:", "unloadWithQoS:error:")},
    "UTF8String": ("NSString",), "bytes": ("NSData",), "length": ("NSData", "NSString"),
    "longLongValue": ("NSNumber",), "count": ("NSArray", "NSDictionary"), "objectAtIndex:": ("NSArray",),
    "objectForKey:": ("NSDictionary",),
}
_KERN_FAILURE = 0xE00002BC     # kIOReturnError
_IO_ITEMSIZE = {"fp16": np.dtype("<f2"), "fp32": np.dtype("<f4")}


class _Obj:
    """A fake Objective-C object (or CF object): class name, value, retain count, children."""

    __slots__ = ("addr", "cls", "value", "rc", "owned", "seq", "dead")

    def __init__(self, addr: int, cls: str, value, seq: int, owned=()):
        self.addr, self.cls, self.value, self.seq = addr, cls, value, seq
        self.rc, self.owned, self.dead = 1, list(owned), False

    @property
    def label(self) -> str:
        return f"<{self.cls}#{self.seq}>"


class _Surface(_Obj):
    __slots__ = ("props", "memory", "base", "lock")


class _Failure(Exception):
    """Internal: a call that fails the way the framework fails (NO + NSError, or nil)."""

    def __init__(self, text):
        self.text = text


class FakeTransport(Transport):
    """Records every call and computes with anekit's simulator; see the module docstring."""

    kind = "fake"

    def __init__(self, chip: str | None = None, compile_limit: int | None = 119, load_limit: int | None = 128,
                 input_order: str = "declared", fail: dict | None = None, tmp_root: str | None = None):
        if input_order not in ("declared", "ascending_size"):
            raise TransportError(f"input_order must be 'declared' or 'ascending_size', got {input_order!r}")
        self.chip, self.compile_limit, self.load_limit = chip, compile_limit, load_limit
        self.input_order = input_order
        self.fail = dict(fail or {})
        self.calls: list[Call] = []
        self.problems: list[str] = []
        self.compiles = self.loads = self.evaluations = 0
        self._addr = itertools.count(0x10_0000_0000, 0x1000)
        self._seq = itertools.count(1)
        self._classes = {next(self._addr): name for name in _CLASSES}
        self._class_refs = {name: Ref(a, "class", name) for a, name in self._classes.items()}
        self._objects: dict[int, _Obj] = {}
        self._memory: dict[int, _Obj] = {}           # base address -> surface or NSData
        self._data_base: dict[int, int] = {}          # NSData object address -> its bytes' address
        self._pools: list[list[_Obj]] = []
        self._counts: dict[str, int] = {}
        self._libraries: set[str] = set()
        self._tmp_root = tmp_root
        self._owns_tmp = tmp_root is None

    # --- bookkeeping ----------------------------------------------------------------------
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
        """(True, text) when `fail` names this call or its current occurrence."""
        n = self._counts[name] = self._counts.get(name, 0) + 1
        for key in (f"{name}#{n}", name):
            if key in self.fail:
                return True, self.fail[key]
        return False, None

    def _new(self, cls: str, value=None, owned=(), autorelease=True, kind=_Obj) -> _Obj:
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

    def _release(self, o: _Obj) -> None:
        if o.dead:
            raise TransportError(f"release of deallocated {o.label} (would crash)")
        o.rc -= 1
        if o.rc > 0:
            return
        o.dead = True
        if o.cls == MODEL and o.value["state"] == "loaded":
            self.problems.append(f"{o.label} deallocated while loaded (unload first)")
        for child in o.owned:
            self._release(child)
        o.owned = []

    def _ref(self, o: _Obj | None) -> Ref | None:
        if o is None:
            return None
        return Ref(o.addr, "surface" if isinstance(o, _Surface) else "object", o.label)

    def _lookup(self, ref, what: str) -> _Obj:
        if not isinstance(ref, Ref):
            raise TransportError(f"{what}: {ref!r} is not a handle")
        o = self._objects.get(ref.address)
        if o is None:
            raise TransportError(f"{what}: 0x{ref.address:x} is not a live object of this transport")
        if o.dead:
            raise TransportError(f"{what}: message to deallocated {o.label} (would crash)")
        return o

    def _arg_obj(self, arg, what: str) -> _Obj | None:
        return None if arg.value is None else self._lookup(arg.value, what)

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

    def _describe(self, o: _Obj | None):
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
        folders = sorted(os.listdir(self._tmp_root)) if self._tmp_root and os.path.isdir(self._tmp_root) else []
        return {"objects": [o.label for o in objs if not isinstance(o, _Surface)],
                "surfaces": [o.label for o in objs if isinstance(o, _Surface)],
                "loaded": [o.label for o in objs if o.cls == MODEL and o.value["state"] == "loaded"],
                "temp_folders": folders}

    def selectors(self) -> list[str]:
        """The selectors and C functions called, in order."""
        return [c.selector for c in self.calls]

    # --- loading and the runtime ---------------------------------------------------------
    def load_library(self, path):
        self._record("C", "dlopen", (path,))
        failed, text = self._injected("dlopen")
        if failed or path not in _KNOWN_LIBRARIES:
            raise TransportError(f"dlopen('{path}') failed: {text or 'image not found'}")
        self._libraries.add(path)

    def get_class(self, name):
        self._record("C", "objc_getClass", (name,))
        failed, _ = self._injected("objc_getClass")
        if failed:
            return None
        if name.startswith("_ANE") and FRAMEWORK not in self._libraries:
            return None          # private classes exist only once the framework is loaded
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
        return self._ref(self._new("NSString", self.tmp_root))

    def check_target(self, target_name):
        if self.chip is None:
            self.chip = target_name
            return
        from ... import targets
        if targets.get(self.chip).compiler != targets.get(target_name).compiler:
            raise TargetError(f"this FakeTransport emulates {self.chip}; it cannot run a program "
                              f"compiled for {target_name}")

    # --- messages ----------------------------------------------------------------------------
    def send(self, receiver, selector, *args, returns="@"):
        if not isinstance(receiver, Ref):
            raise TransportError(f"-{selector} sent to {receiver!r}, not a handle")
        is_class = receiver.address in self._classes
        rlabel = self._classes[receiver.address] if is_class else (
            self._objects[receiver.address].label if receiver.address in self._objects else repr(receiver))
        self._record(rlabel, selector, [self.summary(a) for a in args])
        if is_class:
            cls = self._classes[receiver.address]
            sig = CLASS_SIGNATURES.get((cls, selector))
            target = None
        else:
            target = self._lookup(receiver, f"-{selector}")
            cls = target.cls
            sig = INSTANCE_SIGNATURES.get(selector)
            if cls not in _ANSWERED_BY.get(selector, (cls,)):
                sig = None
        if sig is None:
            raise TransportError(f"{'+' if is_class else '-'}[{cls} {selector}]: unrecognized selector")
        codes = tuple(a.code for a in args)
        if codes != sig[0] or returns != sig[1]:
            raise TransportError(f"[{cls} {selector}] sent with signature ({', '.join(codes)}) -> {returns}; "
                                 f"it takes ({', '.join(sig[0])}) -> {sig[1]}")
        failed, text = self._injected(selector)
        try:
            if failed:
                raise _Failure(text)
            if is_class:
                return self._ref(self._class_message(cls, selector, args))
            return self._instance_message(target, selector, args)
        except _Failure as f:
            if sig[1] == "B":
                err = args[-1]
                if f.text is not None:
                    err.value = self._ref(self._new("NSError", _error_description(f.text)))
                return False
            return None

    def _class_message(self, cls, selector, args) -> _Obj | None:
        v = [a.value for a in args]
        if cls == "NSString":
            return self._new("NSString", v[0].decode("utf-8"))
        if cls == "NSData":
            if len(v[0]) != v[1]:
                raise TransportError(f"dataWithBytes:length: given {len(v[0])} bytes with length {v[1]}")
            return self._new("NSData", bytes(v[0]))
        if cls == "NSNumber":
            return self._new("NSNumber", int(v[0]))
        if cls == "NSArray":
            items = [self._lookup(r, "arrayWithObjects:count:") for r in v[0][:v[1]]]
            if len(items) != v[1]:
                raise TransportError("arrayWithObjects:count: count exceeds the array")
            return self._new("NSArray", items, owned=items)
        if cls == "NSDictionary":
            values = [self._lookup(r, "dictionaryWithObjects:forKeys:count:") for r in v[0]]
            keys = [self._lookup(r, "dictionaryWithObjects:forKeys:count:") for r in v[1]]
            if not len(values) == len(keys) == v[2]:
                raise TransportError("dictionaryWithObjects:forKeys:count: lengths disagree")
            return self._new("NSDictionary", list(zip(keys, values)), owned=keys + values)
        if cls == DESCRIPTOR:
            return self._descriptor(*(self._arg_obj(a, selector) for a in args))
        if cls == MODEL:
            desc = self._arg_obj(args[0], selector)
            if desc is None or desc.cls != DESCRIPTOR:
                return None
            ident = hashlib.sha256(desc.value["mil"] + repr(sorted(
                (k, off, hashlib.sha256(d).hexdigest()) for k, (off, d) in desc.value["weights"].items())).encode()
            ).hexdigest()
            return self._new(MODEL, {"descriptor": desc, "ident": ident, "state": "new", "program": None,
                                     "sim": None}, owned=[desc])
        if cls == SURFACE_OBJECT:
            surface = self._lookup(args[0].value, selector)
            if not isinstance(surface, _Surface):
                return None
            return self._new(SURFACE_OBJECT, surface, owned=[surface])
        if cls == REQUEST:
            return self._request(*(self._arg_obj(a, selector) for a in args))
        raise TransportError(f"+[{cls} {selector}] is not modelled")

    def _descriptor(self, mil, weights, options):
        if mil is None or mil.cls != "NSData" or weights is None or weights.cls != "NSDictionary":
            return None           # nil weights: the real framework fails here without a word
        files = {}
        for key, entry in weights.value:
            if key.cls != "NSString" or not key.value.startswith(MODEL_PATH) or entry.cls != "NSDictionary":
                return None
            fields = {k.value: x for k, x in entry.value if k.cls == "NSString"}
            off, data = fields.get("offset"), fields.get("data")
            if off is None or off.cls != "NSNumber" or data is None or data.cls != "NSData":
                return None
            files[key.value] = (off.value, data.value)
        return self._new(DESCRIPTOR, {"mil": mil.value, "weights": files}, owned=[mil, weights])

    def _request(self, ins, in_idx, outs, out_idx, weights_buffer, perf_stats, procedure):
        def objects_of(arr, cls):
            if arr is None or arr.cls != "NSArray" or any(x.cls != cls for x in arr.value):
                return None
            return arr.value
        surfaces_in, surfaces_out = objects_of(ins, SURFACE_OBJECT), objects_of(outs, SURFACE_OBJECT)
        idx_in, idx_out = objects_of(in_idx, "NSNumber"), objects_of(out_idx, "NSNumber")
        if None in (surfaces_in, surfaces_out, idx_in, idx_out) or procedure is None or procedure.cls != "NSNumber":
            return None
        if len(surfaces_in) != len(idx_in) or len(surfaces_out) != len(idx_out):
            return None
        owned = [ins, in_idx, outs, out_idx, procedure] + [x for x in (weights_buffer, perf_stats) if x is not None]
        return self._new(REQUEST, {"inputs": list(zip(surfaces_in, [i.value for i in idx_in])),
                                   "outputs": list(zip(surfaces_out, [i.value for i in idx_out]))}, owned=owned)

    def _instance_message(self, o: _Obj, selector, args):
        if selector == "retain":
            o.rc += 1
            return self._ref(o)
        if selector == "release":
            self._release(o)
            return None
        if selector == "description":
            text = o.value if o.cls in ("NSString", "NSError") else o.label
            return self._ref(self._new("NSString", str(text)))
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
            return self._ref(o.value[args[0].value])
        if selector == "objectForKey:":
            key = self._arg_obj(args[0], selector)
            for k, v in o.value:
                if key is not None and k.cls == key.cls and k.value == key.value:
                    return self._ref(v)
            return None
        if selector == "hexStringIdentifier":
            return self._ref(self._new("NSString", o.value["ident"]))
        m = o.value
        err = args[-1]
        if selector == "compileWithQoS:options:error:":
            self._check_options(args[1], selector)
            self._compile(m)
        elif selector == "loadWithQoS:options:error:":
            self._check_options(args[1], selector)
            self._load(m)
        elif selector == "evaluateWithQoS:options:request:error:":
            self._check_options(args[1], selector)
            request = self._arg_obj(args[2], selector)
            if request is None or request.cls != REQUEST:
                raise _Failure("request is not an _ANERequest")
            self._evaluate(m, request.value)
        elif selector == "unloadWithQoS:error:":
            if m["state"] != "loaded":
                raise _Failure("model is not loaded")
            m["state"] = "compiled"
        err.value = None
        return True

    def _check_options(self, arg, selector):
        opts = self._arg_obj(arg, selector)
        if opts is not None and opts.cls != "NSDictionary":
            raise _Failure(f"{selector}: options is not a dictionary")

    # --- the framework's behaviour -------------------------------------------------------------
    def _compile(self, m) -> None:
        self.compiles += 1
        if self.compile_limit is not None and self.compiles > self.compile_limit:
            raise _Failure(f"_ANECompiler : ANECCompile() FAILED (compile {self.compiles} of this process; "
                           f"the framework stops compiling after ~{self.compile_limit})")
        folder = os.path.join(self.tmp_root, m["ident"])
        if not os.path.isfile(os.path.join(folder, "model.mil")):
            raise _Failure(f"_ANECompiler : ANECCompile() FAILED: model.mil not found in {folder}")
        desc = m["descriptor"].value
        for key in desc["weights"]:
            if not os.path.isfile(os.path.join(folder, key[len(MODEL_PATH):])):
                raise _Failure(f"_ANECompiler : ANECCompile() FAILED: {key} not found in {folder}")
        try:
            prog = _parse(desc["mil"], desc["weights"])
            from ...sim import Simulator, profile_for
            if self.chip is None:
                raise _Failure("FakeTransport has no chip: pass chip=... or compile through a backend")
            sim = Simulator(prog, profile=profile_for(self.chip))
        except AnekitError as e:
            raise _Failure(f"_ANECompiler : ANECCompile() FAILED: InvalidMILProgram: {e}") from None
        m.update(state="compiled", program=prog, sim=sim)

    def _load(self, m) -> None:
        if m["state"] == "new":
            raise _Failure("_ANEInMemoryModel load: model has not been compiled")
        if m["state"] == "loaded":
            return
        loaded = sum(1 for o in self._objects.values()
                     if not o.dead and o.cls == MODEL and o.value["state"] == "loaded")
        if self.load_limit is not None and loaded >= self.load_limit:
            raise _Failure(f"GetANEFModel: must re-compile ({loaded} programs loaded in this process)")
        self.loads += 1
        m["state"] = "loaded"

    def _evaluate(self, m, request) -> None:
        if m["state"] != "loaded":
            raise _Failure("evaluate: model is not loaded")
        fn = m["program"].main
        symbols = list(fn.inputs)
        if self.input_order == "ascending_size":
            symbols.sort(key=lambda t: t.size * _itemsize(t.dtype))
        if sorted(i for _, i in request["inputs"]) != list(range(len(symbols))):
            raise _Failure(f"request binds input indices {[i for _, i in request['inputs']]}; "
                           f"the program has {len(symbols)} inputs")
        feeds = {}
        for wrapper, idx in request["inputs"]:
            t = symbols[idx]
            surface = self._surface_of(wrapper)
            need = t.size * _itemsize(t.dtype)
            if len(surface.memory) < need:
                raise _Failure(f"input surface {idx} holds {len(surface.memory)} bytes; '{t.name}' needs {need}")
            feeds[t.name] = np.frombuffer(bytes(surface.memory[:need]), dtype=_IO_ITEMSIZE[t.dtype]).reshape(t.shape)
        try:
            outs = m["sim"].run(feeds)
        except AnekitError as e:
            raise _Failure(f"evaluate failed: {e}") from None
        for wrapper, idx in request["outputs"]:
            if not 0 <= idx < len(fn.outputs):
                raise _Failure(f"request output index {idx} out of range")
            t = fn.outputs[idx]
            surface = self._surface_of(wrapper)
            data = np.ascontiguousarray(np.asarray(outs[t.name]), dtype=_IO_ITEMSIZE[_io_dtype(t.dtype)]).tobytes()
            if len(surface.memory) < len(data):
                raise _Failure(f"output surface {idx} holds {len(surface.memory)} bytes; '{t.name}' needs {len(data)}")
            surface.memory[:len(data)] = data
        self.evaluations += 1

    def _surface_of(self, wrapper: _Obj) -> _Surface:
        surface = wrapper.value
        if surface.dead:
            raise TransportError(f"{wrapper.label} wraps a deallocated IOSurface (would crash)")
        if surface.lock is not None:
            self.problems.append(f"{surface.label} was locked by the CPU during evaluate")
        return surface

    # --- IOSurface and memory -------------------------------------------------------------------
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
            self.problems.append(f"IOSurface properties {wrong} differ from brief §2 "
                                 f"(Width = BytesPerRow = AllocSize, Height 1, BytesPerElement 1, PixelFormat 0)")
        s = self._new("IOSurface", None, autorelease=False, kind=_Surface)
        s.props, s.memory, s.lock = props, bytearray(int(props["AllocSize"])), None
        s.base = next(self._addr)
        self._memory[s.base] = s
        return self._ref(s)

    def _surface(self, ref, what) -> _Surface:
        s = self._lookup(ref, what)
        if not isinstance(s, _Surface):
            raise TransportError(f"{what}: {s.label} is not an IOSurface")
        return s

    def surface_lock(self, surface, options):
        s = self._surface(surface, "IOSurfaceLock")
        self._record("C", "IOSurfaceLock", (s.label, options))
        failed, _ = self._injected("IOSurfaceLock")
        if failed:
            return _KERN_FAILURE
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
        o = self._lookup(ref, "CFRelease")
        self._record("C", "CFRelease", (o.label,))
        self._release(o)

    def _memory_at(self, address: int, size: int, what: str) -> _Obj:
        s = self._memory.get(address)
        if s is None:
            raise TransportError(f"{what} at 0x{address:x}: not the start of a surface or NSData (would crash)")
        if s.dead:
            raise TransportError(f"{what}: {s.label} was released (use after free)")
        held = len(s.memory) if isinstance(s, _Surface) else len(s.value)
        if size > held:
            raise TransportError(f"{what} of {size} bytes overruns {s.label} ({held} bytes)")
        return s

    def memory_write(self, address, data):
        s = self._memory_at(address, len(data), "memcpy into memory")
        self._record("C", "memcpy", (s.label, f"<{len(data)} bytes>"))
        if not isinstance(s, _Surface):
            raise TransportError(f"write into {s.label}, which is immutable (would crash)")
        if s.lock != 0:
            raise TransportError(f"write to {s.label} without a read-write lock")
        s.memory[:len(data)] = data

    def memory_read(self, address, size):
        s = self._memory_at(address, size, "memcpy from memory")
        self._record("C", "memcpy", (f"<{size} bytes>", s.label))
        if not isinstance(s, _Surface):
            return bytes(s.value[:size])
        if s.lock is None:
            self.problems.append(f"read of {s.label} without a lock")
        return bytes(s.memory[:size])

    def describe(self):
        return f"FakeTransport (simulated {self.chip or 'any chip'})"


def _itemsize(dtype: str) -> int:
    return _IO_ITEMSIZE[_io_dtype(dtype)].itemsize


def _io_dtype(dtype: str) -> str:
    if dtype not in _IO_ITEMSIZE:
        raise _Failure(f"I/O tensor of dtype {dtype}: the ANE reads and writes fp16 or fp32 surfaces")
    return dtype


def _error_description(text: str) -> str:
    """An NSError's -description, in the framework's shape."""
    return (f'Error Domain=com.apple.appleneuralengine Code=-1 "{text}" '
            f'UserInfo={{NSLocalizedDescription={text}}}')


def _parse(mil: bytes, weights: dict):
    """anekit's MIL parser, with BLOBFILE paths read from the descriptor's weights dictionary
    (each entry's file starts at its `offset` within `data`)."""
    from ...mil import parse
    try:
        text = mil.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Failure(f"MIL text is not UTF-8: {e}") from None
    return parse(text, weights={key: bytes(data[offset:]) for key, (offset, data) in weights.items()})
