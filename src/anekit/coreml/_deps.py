"""Lazy access to coremltools (the `coreml` extra): its protobuf classes and package writer."""
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


def protos():
    """(Model_pb2, MIL_pb2) from the installed coremltools."""
    model_pb2 = _quiet_import("coremltools.proto.Model_pb2")
    mil_pb2 = _quiet_import("coremltools.proto.MIL_pb2")
    return model_pb2, mil_pb2


def coremltools():
    return _quiet_import("coremltools")


def decode_error():
    """The exception class protobuf raises for undecodable bytes."""
    return _quiet_import("google.protobuf.message").DecodeError
