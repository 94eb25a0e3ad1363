"""Opening files that may come from someone else, and writing files named by a model.

Reads: a path may name a FIFO (open() would wait for a writer forever), a device such as
/dev/zero (read() never ends) or a folder. `open_regular` opens without blocking, checks on
the open descriptor that it is a regular file no larger than the caller's limit, and only
then hands it out, so nothing unbounded is ever read.

Writes: a name taken from a model (an output called `../../x`) must stay a plain file name
inside the folder the user chose; `confined_child` refuses anything else and `open_new`
never follows a symlink planted at the destination.
"""
from __future__ import annotations

import os
import re
import stat

from .errors import AnekitError, PathEscapeError

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path, error: type[AnekitError], what: str = "file", limit: int | None = None):
    """(binary file object, size) for a regular file; `error` (an AnekitError class) naming the
    file for anything else: missing, a FIFO or device, a folder, or over `limit` bytes."""
    path = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise error(f"cannot open {what} {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {path} is {_kind(st.st_mode)}, not a regular file; refusing to read it")
        if limit is not None and st.st_size > limit:
            raise error(f"{what} {path} is {st.st_size} bytes, over the {limit}-byte limit")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, error: type[AnekitError], what: str = "file", limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (see open_regular)."""
    handle, size = open_regular(path, error, what, limit)
    with handle:
        try:
            data = handle.read(size if limit is None else min(size, limit) + 1)
        except OSError as e:
            raise error(f"cannot read {what} {os.fspath(path)}: {e.strerror or e}") from None
    if limit is not None and len(data) > limit:      # it grew while we looked
        raise error(f"{what} {os.fspath(path)} is over the {limit}-byte limit")
    return data


_UNSAFE = re.compile(r"[\x00-\x1f/\\:]")


def confined_child(folder: str, name: str, suffix: str = "", what: str = "name") -> str:
    """folder/name+suffix for a `name` taken from a model, refusing one that is not a plain
    file name (path separators, '..', control characters) or whose folder resolves elsewhere."""
    if not isinstance(name, str) or not name or name in (".", "..") or _UNSAFE.search(name) \
            or name != name.strip() or not _encodable(name):
        raise PathEscapeError(f"{what} {name!r} is not a plain file name; refusing to write it into {folder}")
    real_folder = os.path.realpath(folder)
    full = os.path.join(real_folder, name + suffix)
    if os.path.dirname(full) != real_folder:
        raise PathEscapeError(f"{what} {name!r} would be written outside {folder}")
    return full


def _encodable(name: str) -> bool:
    try:
        os.fsencode(name)
        name.encode("utf-8")
    except UnicodeError:
        return False
    return True


def refuse_non_regular(path: str, error: type[AnekitError]) -> None:
    """`error` when something other than a regular file (a symlink, FIFO, device, folder)
    already exists at `path`, which is about to be written."""
    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        return
    if not stat.S_ISREG(st.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else _kind(st.st_mode)
        raise error(f"cannot write {path}: it is {what}, not a regular file")


def open_new(path: str, error: type[AnekitError]):
    """A binary file object writing `path`, replacing a regular file there but never following
    a symlink (a link planted at the destination is refused)."""
    flags = (os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
             | getattr(os, "O_BINARY", 0))
    refuse_non_regular(path, error)   # look before opening: opening a device or FIFO already acts on it
    try:
        fd = os.open(path, flags, 0o644)    # a FIFO without a reader fails here instead of waiting
    except OSError as e:
        raise error(f"cannot write {path}: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"cannot write {path}: it is {_kind(mode)}")
        os.ftruncate(fd, 0)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "wb")


def ensure_inside(root: str, path: str, what: str) -> str:
    """The real path of `path`, refusing one that resolves (through symlinks) outside `root`."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise PathEscapeError(f"{what} {path} resolves to {real}, outside {root}")
    return real
