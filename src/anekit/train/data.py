"""Datasets for `anekit train digits` and a deterministic, resumable batch stream.

    ds = load_digits()                  # scikit-learn's bundled 8x8 digits (offline)
    ds = load_mnist("~/data/mnist")     # standard MNIST IDX files, plain or .gz
    batches = Batches(ds.train_x, ds.train_y, batch_size=32, seed=0)

Splits (docs/training.md): digits' 1797 images are permuted with `split_seed` and the first
1000 form the test set (the guide's 1000-sample test set, ch. 15), the other 797 train. MNIST
trains on the 60000 training images and tests on the first 1000 of the 10000 test images.
Pixels scale to [0, 1].
"""
from __future__ import annotations

import gzip
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DependencyError, ModelFormatError, UsageError
from ..errors import CheckpointError

TEST_SIZE = 1000


@dataclass
class Dataset:
    name: str
    train_x: np.ndarray     # [N, 1, H, W] float32 in [0, 1]
    train_y: np.ndarray     # [N] int64 labels 0..9
    test_x: np.ndarray
    test_y: np.ndarray

    @property
    def image_size(self) -> int:
        return self.train_x.shape[-1]

    def describe(self) -> str:
        return (f"{self.name}: {len(self.train_y)} train / {len(self.test_y)} test images, "
                f"{self.image_size}x{self.image_size}")


def load_digits(split_seed: int = 0, test_size: int = TEST_SIZE) -> Dataset:
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise DependencyError("the digits dataset needs scikit-learn: pip install 'anekit[train]'") from None
    d = sk_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]          # [1797, 1, 8, 8]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(split_seed).permutation(len(y))
    test, train = order[:test_size], order[test_size:]
    return Dataset("digits-8x8", x[train], y[train], x[test], y[test])


# --- MNIST IDX ------------------------------------------------------------------------------

_IDX_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
              "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
_MAX_IDX_BYTES = 1 << 30


def read_idx(path, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX array (magic 0x0000080N, N = ndim), plain or gzip; the header,
    the dimensions and the file size are checked before the data is read."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4 + 4 * ndim)
            if len(head) < 4 + 4 * ndim:
                raise ModelFormatError(f"{path}: truncated IDX header")
            magic, *dims = struct.unpack(f">I{ndim}I", head)
            if magic != 0x800 | ndim:
                raise ModelFormatError(f"{path}: IDX magic {magic:#010x}, expected {0x800 | ndim:#010x} "
                                       f"(unsigned bytes, {ndim} dimensions)")
            count = math.prod(dims)
            if count == 0 or count > _MAX_IDX_BYTES:
                raise ModelFormatError(f"{path}: IDX dimensions {dims} are empty or implausibly large")
            data = f.read(count)
            if len(data) != count:
                raise ModelFormatError(f"{path}: truncated: {len(data)} of {count} data bytes")
            if f.read(1):
                raise ModelFormatError(f"{path}: trailing bytes after {count} data bytes")
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ModelFormatError(f"{path}: unreadable IDX file ({e})") from None
    return np.frombuffer(data, np.uint8).reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise UsageError(f"--data {folder}: no {stem} or {stem}.gz there (standard MNIST IDX file names)")


def load_mnist(folder, test_size: int = TEST_SIZE) -> Dataset:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UsageError(f"--data {folder}: not a folder")
    arrs = {k: read_idx(_find(folder, stem), 3 if k.endswith("_x") else 1) for k, stem in _IDX_FILES.items()}
    for split in ("train", "test"):
        x, y = arrs[f"{split}_x"], arrs[f"{split}_y"]
        if len(x) != len(y):
            raise ModelFormatError(f"MNIST {split}: {len(x)} images but {len(y)} labels")
        if x.shape[1:] != (28, 28) or y.max() > 9:
            raise ModelFormatError(f"MNIST {split}: images {list(x.shape[1:])}, labels up to {y.max()}; "
                                   "expected 28x28 images and labels 0-9")
    px = lambda a: (a.astype(np.float32) / 255.0)[:, None]
    return Dataset("mnist-28x28", px(arrs["train_x"]), arrs["train_y"].astype(np.int64),
                   px(arrs["test_x"][:test_size]), arrs["test_y"][:test_size].astype(np.int64))


def write_idx(path, arr: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip when the name ends in .gz); for tests and for
    turning other image sets into the format `--data` reads."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    blob = struct.pack(f">I{arr.ndim}I", 0x800 | arr.ndim, *arr.shape) + arr.tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        blob = gzip.compress(blob, mtime=0)
    path.write_bytes(blob)


# --- batches --------------------------------------------------------------------------------

def one_hot(y: np.ndarray, classes: int = 10) -> np.ndarray:
    out = np.zeros((len(y), classes), np.float32)
    out[np.arange(len(y)), y] = 1.0
    return out


class Batches:
    """An endless, deterministic minibatch stream: epoch e visits the training set in the order
    `default_rng([seed, e]).permutation(N)`, dropping the ragged tail. The position (batches
    drawn) is the whole state, so a checkpoint resumes the exact data order."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int = 32, seed: int = 0,
                 names: tuple[str, str] = ("x", "y"), classes: int = 10):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= len(y):
            raise UsageError(f"batch_size must be an integer in [1, {len(y)}], got {batch_size!r}")
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, int(seed)
        self.names, self.classes = names, classes
        self.per_epoch = len(y) // batch_size
        self.position = 0
        self._order: tuple[int, np.ndarray] | None = None

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        epoch, k = divmod(self.position, self.per_epoch)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.y)))
        idx = self._order[1][k * self.batch_size:(k + 1) * self.batch_size]
        self.position += 1
        return {self.names[0]: self.x[idx], self.names[1]: one_hot(self.y[idx], self.classes)}

    def state(self) -> dict:
        return {"position": self.position, "seed": self.seed, "batch_size": self.batch_size}

    def restore(self, state: dict) -> None:
        if state.get("seed") != self.seed or state.get("batch_size") != self.batch_size:
            raise CheckpointError(f"checkpoint data stream used seed {state.get('seed')}, batch size "
                                  f"{state.get('batch_size')}; this run uses {self.seed}, {self.batch_size}")
        self.position = int(state["position"])
