"""What this machine is: macOS on Apple Silicon or not, the chip, the OS version, and whether
AppleNeuralEngine.framework and its classes load. Never raises: every answer is a value.
"""
from __future__ import annotations

import ctypes
import functools
import platform
import sys

from ... import targets
from ...errors import TargetError
from ..base import Availability
from .objc import ObjCRuntime
from .protocol import DESCRIPTOR, FRAMEWORK, MODEL, REQUEST, SURFACE_OBJECT

_NEEDS = "the ANE backend needs Apple Silicon macOS"


def _sysctl(name: str) -> bytes | None:
    """sysctlbyname(name) raw bytes on macOS, None elsewhere or when the name is unknown."""
    if sys.platform != "darwin":
        return None
    try:
        libc = ctypes.CDLL("/usr/lib/libSystem.B.dylib")
        size = ctypes.c_size_t(0)
        if libc.sysctlbyname(name.encode(), None, ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
            return None
        buf = ctypes.create_string_buffer(size.value)
        if libc.sysctlbyname(name.encode(), buf, ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
            return None
        return buf.raw[:size.value]
    except OSError:
        return None


def _sysctl_int(name: str) -> int | None:
    raw = _sysctl(name)
    return int.from_bytes(raw, "little") if raw else None


def chip_brand() -> str | None:
    """"Apple M4 Pro" (sysctl machdep.cpu.brand_string) on a Mac, None elsewhere."""
    raw = _sysctl("machdep.cpu.brand_string")
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip() if raw else None


def chip_target(brand: str | None = None) -> str | None:
    """The anekit target name for this Mac's chip ("M4 Pro"), None when unknown."""
    brand = brand if brand is not None else chip_brand()
    if not brand:
        return None
    name = brand[len("Apple "):] if brand.startswith("Apple ") else brand
    try:
        return targets.get(name).name
    except TargetError:
        return None


def os_version() -> str:
    if sys.platform == "darwin":
        return f"macOS {platform.mac_ver()[0]}"
    return f"{platform.system()} {platform.release()}"


def is_apple_silicon() -> bool:
    """True on an arm64 Mac, also when this Python runs under Rosetta."""
    return sys.platform == "darwin" and (platform.machine() == "arm64" or _sysctl_int("hw.optional.arm64") == 1)


def under_rosetta() -> bool:
    return sys.platform == "darwin" and _sysctl_int("sysctl.proc_translated") == 1


@functools.lru_cache(maxsize=1)
def ane_availability() -> Availability:
    """Whether the private-API backend can run here, and why not (cached per process)."""
    if sys.platform != "darwin":
        return Availability(False, f"{_NEEDS}; this is {platform.system()} {platform.machine()} "
                                   f"(use backend='sim', or transport=FakeTransport() to exercise the protocol)")
    if not is_apple_silicon():
        return Availability(False, f"{_NEEDS}; this Mac has an Intel CPU")
    if under_rosetta() or platform.machine() != "arm64":
        return Availability(False, f"{_NEEDS}; this Python runs as x86_64 under Rosetta, use an arm64 Python")
    try:
        ctypes.CDLL(FRAMEWORK)
        rt = ObjCRuntime()
        missing = [c for c in (DESCRIPTOR, MODEL, REQUEST, SURFACE_OBJECT) if not rt.get_class(c)]
    except Exception as e:  # any load failure is a reason, never a crash
        return Availability(False, f"AppleNeuralEngine.framework did not load: {e}")
    if missing:
        return Availability(False, f"AppleNeuralEngine.framework lacks {', '.join(missing)} "
                                   f"on {os_version()} (the private API changed)")
    return Availability(True, f"{chip_brand() or 'Apple Silicon'}, {os_version()}")


def check_host_target(target_name: str, host: str | None = None) -> None:
    """The engine in this Mac compiles for itself: a program lowered for another chip family
    (another MIL dialect, other limits) is refused before it reaches the framework."""
    host = host if host is not None else chip_target()
    if host is None:     # a chip anekit does not know: let the framework decide
        return
    here, want = targets.get(host), targets.get(target_name)
    if here.family != want.family:
        raise TargetError(f"this Mac's engine is {here.name} (family {here.family}); a program for "
                          f"{want.name} (family {want.family}) cannot run on it. Leave target unset to "
                          f"use this Mac's chip, or use backend='sim' to simulate {want.name}")
