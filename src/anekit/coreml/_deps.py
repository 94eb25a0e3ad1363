"""Lazy access to the protobuf layer: anekit's own generated Core ML modules for reading
(`anekit.coreml.proto`, needs only the `protobuf` package), coremltools for writing."""
from __future__ import annotations

import importlib
import logging

from ..errors import DependencyError

_HINT = "install it with `pip install 'anekit[coreml]'` (coremltools)"


def _quiet_import(name: str):
    # coremltools logs a warning per missing native predictor on Linux; predicting is not
    # what anekit uses it for, so keep those messages out of the user's console.
    log = logging.getLogger("coremltools")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise DependencyError(f"Core ML support needs coremltools ({e}); {_HINT}") from None
    finally:
        log.setLevel(level)


_READ_HINT = "install it with `pip install 'anekit[coreml-load]'` (protobuf)"


def reader_protos():
    """(Model_pb2, MIL_pb2) generated for anekit (tools/gen_coreml_proto.py): loading a package
    imports neither coremltools nor torch, and the modules load in a few milliseconds."""
    try:
        return (importlib.import_module("anekit.coreml.proto.Model_pb2"),
                importlib.import_module("anekit.coreml.proto.MIL_pb2"))
    except ImportError as e:
        raise DependencyError(f"reading Core ML packages needs protobuf ({e}); {_READ_HINT}") from None


def protos():
    """(Model_pb2, MIL_pb2) from the installed coremltools (the writer hands its Model to
    coremltools' package writer, which wants coremltools' own classes)."""
    model_pb2 = _quiet_import("coremltools.proto.Model_pb2")
    mil_pb2 = _quiet_import("coremltools.proto.MIL_pb2")
    return model_pb2, mil_pb2


def coremltools():
    return _quiet_import("coremltools")


def decode_error():
    """The exception class protobuf raises for undecodable bytes."""
    try:
        return importlib.import_module("google.protobuf.message").DecodeError
    except ImportError as e:
        raise DependencyError(f"reading Core ML packages needs protobuf ({e}); {_READ_HINT}") from None
