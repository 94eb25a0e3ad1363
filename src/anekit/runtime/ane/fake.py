"""FakeTransport: AppleNeuralEngine.framework's behaviour at the transport boundary, anywhere.

It records every call in `.calls` as (receiver, selector or C function, args summary), keeps
the Objective-C object model of anekit.runtime.ane.fake_objc (retain counts, autorelease
pools, deallocation, IOSurfaces), and behaves like the framework where the protocol depends
on it (docs/hardware.md):

- `modelWithMILText:weights:optionsPlist:` needs NSData text and an NSDictionary of
  {"@model_path/...": {"offset": NSNumber, "data": NSData}}; nil weights give nil (the real
  framework fails silently there).
- `hexStringIdentifier` is a content hash; compile looks for model.mil and each weights file
  in NSTemporaryDirectory()/<identifier>/ and fails (NO plus an NSError) when one is missing,
  when anekit's MIL parser rejects the text, or after `compile_limit` compiles (119, the
  per-process limit of docs/hardware.md).
- load fails past `load_limit` loaded programs (~128, guide ch. 14).
- evaluate reads the input surfaces ([1, C, 1, S], fp16 or fp32 as the MIL declares; symbol i
  is the i-th input in declared or ascending-size order, `input_order`), runs anekit's
  simulator with the chip's numerics, and writes the output surfaces.

Besides the crashes and leaks the object model catches, it reports a surface locked by the
CPU during evaluate and a model deallocated while loaded. `.live()` lists what is still
allocated. `fail={"loadWithQoS:options:error:": "text", "IOSurfaceCreate#2": None}` makes the
named call (or its N-th occurrence) fail, with that error text, to test every error path.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np

from ... import targets
from ...errors import AnekitError, TargetError, TransportError
from ...mil import parse
from ...sim import Simulator, profile_for
from .fake_objc import Failure, FakeObjC, Obj, Surface
from .layout import INPUT_ORDERS, IO_DTYPES
from .protocol import DESCRIPTOR, FRAMEWORK, MODEL, MODEL_PATH, REQUEST, SURFACE_OBJECT

_REQUEST_SEL = "requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex:"


class FakeTransport(FakeObjC):
    """Records every call and computes with anekit's simulator; see the module docstring."""

    libraries = (FRAMEWORK,)
    private_classes = (DESCRIPTOR, MODEL, REQUEST, SURFACE_OBJECT, "_ANEClient")
    # The framework's documented signatures (docs/hardware.md), stated independently of the
    # protocol code, so a wrong C type there fails here.
    class_signatures = {
        (DESCRIPTOR, "modelWithMILText:weights:optionsPlist:"): (("@", "@", "@"), "@"),
        (MODEL, "inMemoryModelWithDescriptor:"): (("@",), "@"),
        (SURFACE_OBJECT, "objectWithIOSurface:"): (("^v",), "@"),
        (REQUEST, _REQUEST_SEL): (("@",) * 7, "@"),
    }
    instance_signatures = {
        "hexStringIdentifier": ((), "@"),
        "compileWithQoS:options:error:": (("I", "@", "^@"), "B"),
        "loadWithQoS:options:error:": (("I", "@", "^@"), "B"),
        "evaluateWithQoS:options:request:error:": (("I", "@", "@", "^@"), "B"),
        "unloadWithQoS:error:": (("I", "^@"), "B"),
    }
    answered_by = {sel: (MODEL,) for sel in instance_signatures}

    def __init__(self, chip: str | None = None, compile_limit: int | None = 119, load_limit: int | None = 128,
                 input_order: str = "declared", fail: dict | None = None, tmp_root: str | None = None):
        if input_order not in INPUT_ORDERS:
            raise TransportError(f"input_order must be one of {', '.join(INPUT_ORDERS)}, got {input_order!r}")
        super().__init__(fail, tmp_root)
        self.chip, self.compile_limit, self.load_limit = chip, compile_limit, load_limit
        self.input_order = input_order
        self.compiles = self.loads = self.evaluations = 0

    def describe(self):
        return f"FakeTransport (simulated {self.chip or 'any chip'})"

    def check_target(self, target_name):
        """Adopt the first target compiled for; refuse another chip generation after that."""
        if self.chip is None:
            self.chip = target_name
            return
        if targets.get(self.chip).compiler != targets.get(target_name).compiler:
            raise TargetError(f"this FakeTransport emulates {self.chip}; it cannot run a program "
                              f"compiled for {target_name}")

    # --- hooks of the object model ----------------------------------------------------------------
    def on_dealloc(self, o: Obj) -> None:
        if o.cls == MODEL and o.value["state"] == "loaded":
            self.problems.append(f"{o.label} deallocated while loaded (unload first)")

    def loaded_labels(self) -> list[str]:
        return [o.label for o in self._objects.values()
                if not o.dead and o.cls == MODEL and o.value["state"] == "loaded"]

    def framework_class_message(self, cls, selector, args) -> Obj | None:
        if cls == DESCRIPTOR:
            return self._descriptor(*(self.arg_obj(a, selector) for a in args))
        if cls == MODEL:
            desc = self.arg_obj(args[0], selector)
            if desc is None or desc.cls != DESCRIPTOR:
                return None
            weights = sorted((k, off, hashlib.sha256(d).hexdigest()) for k, (off, d) in desc.value["weights"].items())
            ident = hashlib.sha256(desc.value["mil"] + repr(weights).encode()).hexdigest()
            return self.new(MODEL, {"descriptor": desc, "ident": ident, "state": "new", "program": None, "sim": None},
                            owned=[desc])
        if cls == SURFACE_OBJECT:
            surface = self.lookup(args[0].value, selector)
            return self.new(SURFACE_OBJECT, surface, owned=[surface]) if isinstance(surface, Surface) else None
        if cls == REQUEST:
            return self._request(*(self.arg_obj(a, selector) for a in args))
        return super().framework_class_message(cls, selector, args)

    def framework_instance_message(self, o: Obj, selector, args):
        m = o.value
        if selector == "hexStringIdentifier":
            return self.ref(self.new("NSString", m["ident"]))
        if selector == "compileWithQoS:options:error:":
            self._check_options(args[1], selector)
            self._compile(m)
        elif selector == "loadWithQoS:options:error:":
            self._check_options(args[1], selector)
            self._load(m)
        elif selector == "evaluateWithQoS:options:request:error:":
            self._check_options(args[1], selector)
            request = self.arg_obj(args[2], selector)
            if request is None or request.cls != REQUEST:
                raise Failure("request is not an _ANERequest")
            self._evaluate(m, request.value)
        elif selector == "unloadWithQoS:error:":
            if m["state"] != "loaded":
                raise Failure("model is not loaded")
            m["state"] = "compiled"
        else:
            return super().framework_instance_message(o, selector, args)
        args[-1].value = None
        return True

    # --- the framework's behaviour ---------------------------------------------------------------------
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
        return self.new(DESCRIPTOR, {"mil": mil.value, "weights": files}, owned=[mil, weights])

    def _request(self, ins, in_idx, outs, out_idx, weights_buffer, perf_stats, procedure):
        def items(arr, cls):
            if arr is None or arr.cls != "NSArray" or any(x.cls != cls for x in arr.value):
                return None
            return arr.value
        surfaces_in, surfaces_out = items(ins, SURFACE_OBJECT), items(outs, SURFACE_OBJECT)
        idx_in, idx_out = items(in_idx, "NSNumber"), items(out_idx, "NSNumber")
        if None in (surfaces_in, surfaces_out, idx_in, idx_out) or procedure is None or procedure.cls != "NSNumber":
            return None
        if len(surfaces_in) != len(idx_in) or len(surfaces_out) != len(idx_out):
            return None
        owned = [ins, in_idx, outs, out_idx, procedure] + [x for x in (weights_buffer, perf_stats) if x is not None]
        return self.new(REQUEST, {"inputs": list(zip(surfaces_in, [i.value for i in idx_in])),
                                  "outputs": list(zip(surfaces_out, [i.value for i in idx_out]))}, owned=owned)

    def _check_options(self, arg, selector):
        opts = self.arg_obj(arg, selector)
        if opts is not None and opts.cls != "NSDictionary":
            raise Failure(f"{selector}: options is not a dictionary")

    def _compile(self, m) -> None:
        self.compiles += 1
        if self.compile_limit is not None and self.compiles > self.compile_limit:
            raise Failure(f"_ANECompiler : ANECCompile() FAILED (compile {self.compiles} of this process; "
                          f"the framework stops compiling after ~{self.compile_limit})")
        folder = os.path.join(self.tmp_root, m["ident"])
        if not os.path.isfile(os.path.join(folder, "model.mil")):
            raise Failure(f"_ANECompiler : ANECCompile() FAILED: model.mil not found in {folder}")
        desc = m["descriptor"].value
        for key in desc["weights"]:
            if not os.path.isfile(os.path.join(folder, key[len(MODEL_PATH):])):
                raise Failure(f"_ANECompiler : ANECCompile() FAILED: {key} not found in {folder}")
        if self.chip is None:
            raise Failure("FakeTransport has no chip: pass chip=... or compile through a backend")
        try:
            prog = _parse(desc["mil"], desc["weights"])
            sim = Simulator(prog, profile=profile_for(self.chip))
        except AnekitError as e:
            raise Failure(f"_ANECompiler : ANECCompile() FAILED: InvalidMILProgram: {e}") from None
        m.update(state="compiled", program=prog, sim=sim)

    def _load(self, m) -> None:
        if m["state"] == "new":
            raise Failure("_ANEInMemoryModel load: model has not been compiled")
        if m["state"] == "loaded":
            return
        loaded = len(self.loaded_labels())
        if self.load_limit is not None and loaded >= self.load_limit:
            raise Failure(f"GetANEFModel: must re-compile ({loaded} programs loaded in this process)")
        self.loads += 1
        m["state"] = "loaded"

    def _evaluate(self, m, request) -> None:
        if m["state"] != "loaded":
            raise Failure("evaluate: model is not loaded")
        fn = m["program"].main
        symbols = list(fn.inputs)
        if self.input_order == "ascending_size":
            symbols.sort(key=lambda t: t.size * _io_dtype(t.dtype).itemsize)
        if sorted(i for _, i in request["inputs"]) != list(range(len(symbols))):
            raise Failure(f"request binds input indices {[i for _, i in request['inputs']]}; "
                          f"the program has {len(symbols)} inputs")
        feeds = {}
        for wrapper, idx in request["inputs"]:
            t = symbols[idx]
            surface = self._surface_of(wrapper)
            dtype = _io_dtype(t.dtype)
            need = t.size * dtype.itemsize
            if len(surface.memory) < need:
                raise Failure(f"input surface {idx} holds {len(surface.memory)} bytes; '{t.name}' needs {need}")
            feeds[t.name] = np.frombuffer(bytes(surface.memory[:need]), dtype=dtype).reshape(t.shape)
        try:
            outs = m["sim"].run(feeds)
        except AnekitError as e:
            raise Failure(f"evaluate failed: {e}") from None
        for wrapper, idx in request["outputs"]:
            if not 0 <= idx < len(fn.outputs):
                raise Failure(f"request output index {idx} out of range")
            t = fn.outputs[idx]
            surface = self._surface_of(wrapper)
            data = np.ascontiguousarray(np.asarray(outs[t.name]), dtype=_io_dtype(t.dtype)).tobytes()
            if len(surface.memory) < len(data):
                raise Failure(f"output surface {idx} holds {len(surface.memory)} bytes; '{t.name}' needs {len(data)}")
            surface.memory[:len(data)] = data
        self.evaluations += 1

    def _surface_of(self, wrapper: Obj) -> Surface:
        surface = wrapper.value
        if surface.dead:
            raise TransportError(f"{wrapper.label} wraps a deallocated IOSurface (would crash)")
        if surface.lock is not None:
            self.problems.append(f"{surface.label} was locked by the CPU during evaluate")
        return surface


def _io_dtype(dtype: str) -> np.dtype:
    if dtype not in IO_DTYPES:
        raise Failure(f"I/O tensor of dtype {dtype}: the ANE reads and writes fp16 or fp32 surfaces")
    return IO_DTYPES[dtype]


def _parse(mil: bytes, weights: dict):
    """anekit's MIL parser, with BLOBFILE paths read from the descriptor's weights dictionary
    (each entry's file starts at its `offset` within `data`)."""
    try:
        text = mil.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Failure(f"MIL text is not UTF-8: {e}") from None
    return parse(text, weights={key: bytes(data[offset:]) for key, (offset, data) in weights.items()})
