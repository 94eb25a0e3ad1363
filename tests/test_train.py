"""Trainer, loss scaling and checkpoints on the digits net (8x8, simulator, M1 numerics)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from anekit.errors import CheckpointError, TrainingError, UsageError
from anekit.models import digits
from anekit.train import LossScaler, Trainer, checkpoint, data, optim

pytest.importorskip("sklearn", reason="the digits data ships with scikit-learn (the train extra)")

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def ds():
    return data.load_digits()


def _trainer(tmp=None, batch=16, seed=0, loss_scale="dynamic", opt_cls=optim.Adam, **kw):
    loss, params, _ = digits.build(8, batch, seed=seed)
    return Trainer(loss, params, opt_cls(params, lr=1e-2), target="m1", loss_scale=loss_scale,
                   checkpoint_dir=tmp, progress=False, **kw)


def _snapshot(tr):
    tensors, meta = tr.opt.state_dict()
    return {k: v.copy() for k, v in tensors.items()}, tr.scaler.state_dict(), tr.step


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k


def test_resume_is_bit_exact(ds, tmp_path):
    """20 steps in one run == 10 steps, checkpoint, a fresh trainer resumes, 10 more: bit for bit
    (parameters, Adam moments, loss-scale state), with a dynamic scale that grows on the way."""
    scaler = lambda: LossScaler("dynamic", init_scale=256, growth_interval=4)
    one = _trainer(loss_scale=scaler())
    one.fit(data.Batches(ds.train_x, ds.train_y, 16, seed=3), 20)
    first = _trainer(tmp_path, loss_scale=scaler(), checkpoint_every=10)
    first.fit(data.Batches(ds.train_x, ds.train_y, 16, seed=3), 10)
    second = _trainer(tmp_path, loss_scale=scaler())
    assert second.resume() == 10
    second.fit(data.Batches(ds.train_x, ds.train_y, 16, seed=3), 20)
    a, b = _snapshot(one), _snapshot(second)
    _same(a[0], b[0])
    assert a[1] == b[1] and a[1]["scale"] > 256 and a[2] == b[2] == 20
    # ... and the weights moved, so equality is not vacuous.
    assert not np.array_equal(one.opt.params["fc_w"], digits.init_params(8)["fc_w"].astype(np.float16))


def test_interrupt_from_batch_iterator_then_resume(ds, tmp_path):
    """KeyboardInterrupt while fetching batch 8 stops after step 7 with a consistent checkpoint;
    resuming reaches the same weights as an uninterrupted run."""
    def stream(stop_at):
        b = data.Batches(ds.train_x, ds.train_y, 16, seed=1)
        for i, batch in enumerate(b, 1):
            if i == stop_at:
                raise KeyboardInterrupt
            yield batch
    tr = _trainer(tmp_path)
    res = tr.fit(stream(8), 12)
    assert res.interrupted and tr.step == 7
    _, meta = checkpoint.read(tmp_path / checkpoint.FILE_NAME)
    assert meta["step"] == 7 and meta["data"] == {"kind": "count", "position": 7}
    again = _trainer(tmp_path)
    again.resume()
    again.fit(stream(10 ** 9), 12)
    ref = _trainer()
    ref.fit(stream(10 ** 9), 12)
    _same(_snapshot(again)[0], _snapshot(ref)[0])


def test_sigint_stops_cleanly_in_a_subprocess(tmp_path):
    """SIGINT to `anekit train digits` finishes the step, writes a checkpoint whose step equals
    the logged steps, exits 130; --resume continues from there."""
    env = {**os.environ, "PYTHONPATH": SRC}
    ck = tmp_path / "ck"
    cmd = [sys.executable, "-m", "anekit", "train", "digits", "--steps", "5000", "--checkpoint", str(ck), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = ck / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 5):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted after step" in err and "Traceback" not in err
    _, meta = checkpoint.read(ck / checkpoint.FILE_NAME)
    logged = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert meta["step"] == logged[-1] >= 5 and meta["step"] < 5000
    assert meta["data"]["position"] == meta["step"]
    r = subprocess.run(cmd[:6] + [str(meta["step"] + 2)] + cmd[7:] + ["--resume", "--json"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["steps"] == meta["step"] + 2


def test_nan_loss_stops_naming_the_step_and_keeps_the_checkpoint(ds, tmp_path):
    tr = _trainer(tmp_path, checkpoint_every=2)
    b = data.Batches(ds.train_x, ds.train_y, 16, seed=0)
    tr.fit(b, 2)
    path = tmp_path / checkpoint.FILE_NAME
    before = path.read_bytes()
    bad = next(b)
    bad["x"] = np.full_like(bad["x"], 60000.0)        # the forward pass overflows fp16
    with pytest.raises(TrainingError, match=r"step 3: the loss is (inf|nan).*checkpoint \(step 2\) is intact"):
        tr.fit(iter([bad]), 5)
    assert path.read_bytes() == before and tr.step == 2


def test_dynamic_loss_scale_skips_overflowed_steps(ds):
    """At a loss scale of 2**18 the fp16 gradients overflow: those steps are skipped (weights
    untouched), the scale halves each time, and the overflow count is reported."""
    tr = _trainer(loss_scale=LossScaler("dynamic", init_scale=2 ** 18, max_scale=2 ** 18))
    w0 = tr.opt.params["fc_w"].copy()
    b = data.Batches(ds.train_x, ds.train_y, 16, seed=0)
    res = tr.fit(b, 1)
    assert res.overflow_steps == 1 and res.history[0]["overflow"] and res.loss_scale == 2 ** 17
    assert np.array_equal(tr.opt.params["fc_w"], w0) and tr.opt.t == 0
    res = tr.fit(b, 12)
    assert res.overflow_steps >= 1 and tr.opt.t == 12 - res.overflow_steps
    assert not np.array_equal(tr.opt.params["fc_w"], w0)


def test_loss_scaler_rules():
    s = LossScaler("dynamic", init_scale=1024, growth_interval=3)
    assert s.update(True) and s.update(True) and s.scale == 1024
    assert s.update(True) and s.scale == 2048
    assert not s.update(False) and s.scale == 1024 and s.overflow_steps == 1
    st = LossScaler(512)
    assert not st.dynamic and not st.update(False) and st.scale == 512 and st.overflow_steps == 1
    assert LossScaler("static").scale == 256
    with pytest.raises(UsageError, match="power of two"):
        LossScaler(300)


# --- checkpoints ---------------------------------------------------------------------------

def _saved(ds, tmp_path):
    tr = _trainer(tmp_path)
    tr.fit(data.Batches(ds.train_x, ds.train_y, 16, seed=0), 3)
    return tr, tmp_path / checkpoint.FILE_NAME


def _expect_refused(tmp_path, path, match, **kw):
    fresh = _trainer(tmp_path, **kw)
    before = _snapshot(fresh)
    with pytest.raises(CheckpointError, match=match):
        fresh.resume(path)
    after = _snapshot(fresh)
    _same(before[0], after[0])                           # loads nothing
    assert before[1:] == after[1:]


def test_truncated_and_corrupt_checkpoints_load_nothing(ds, tmp_path):
    _, path = _saved(ds, tmp_path)
    blob = path.read_bytes()
    bad = tmp_path / "bad.safetensors"
    cases = [(blob[:5], "truncated"), (blob[:-7], "do not fit|bytes after"),
             ((2 ** 40).to_bytes(8, "little") + blob[8:], "header length"),
             (blob[:8] + b"X" + blob[9:], "not valid JSON"),
             (blob + b"junk", "bytes after the last tensor")]
    for data_bytes, match in cases:
        bad.write_bytes(data_bytes)
        _expect_refused(tmp_path, bad, match)
    # a tensor entry pointing outside the file
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"][1] += 10 ** 9
    hb = json.dumps(header).encode()
    bad.write_bytes(len(hb).to_bytes(8, "little") + hb + blob[8 + n:])
    _expect_refused(tmp_path, bad, "do not fit")
    _expect_refused(tmp_path, tmp_path / "missing.safetensors", "no checkpoint")


def test_mismatched_checkpoints_load_nothing(ds, tmp_path):
    _, path = _saved(ds, tmp_path)
    _expect_refused(tmp_path, path, "another model", batch=8)                # a different program
    adamw = lambda ps, lr: optim.AdamW(ps, lr=lr, weight_decay=0.1)
    _expect_refused(tmp_path, path, "optimizer state", opt_cls=adamw)        # a different optimizer
    _expect_refused(tmp_path, path, "loss scaling", loss_scale=256)
    # same fingerprint, tensor of the wrong shape
    tensors, meta = checkpoint.read(path)
    tensors["param/fc_w"] = np.zeros((3, 3), np.float16)
    checkpoint.write(tmp_path / "shape.safetensors", tensors, meta)
    _expect_refused(tmp_path, tmp_path / "shape.safetensors", "fc_w")


def test_checkpoint_write_is_atomic(ds, tmp_path, monkeypatch):
    tr, path = _saved(ds, tmp_path)
    tr.fit(data.Batches(ds.train_x, ds.train_y, 16, seed=5), 4)     # saves at step 4
    before = path.read_bytes()
    tr.step += 1                                                       # state differs from the file
    def boom(*a):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        tr.save()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_checkpoint_is_plain_safetensors(ds, tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    tr, path = _saved(ds, tmp_path)
    loaded = st.load_file(str(path))
    ours, meta = checkpoint.read(path)
    assert loaded.keys() == ours.keys() and "param/fc_w" in ours and "opt/m_fc_w" in ours
    for k in ours:
        assert loaded[k].tobytes() == ours[k].tobytes()
    assert meta["step"] == 3 and "rng" in meta and meta["loss_scale"]["dynamic"]
    assert b"pickle" not in path.read_bytes()[:8 + int.from_bytes(path.read_bytes()[:8], "little")]


# --- data ----------------------------------------------------------------------------------

def test_idx_reader_checks_before_use(tmp_path):
    imgs = np.arange(3 * 28 * 28, dtype=np.uint32).reshape(3, 28, 28).astype(np.uint8)
    data.write_idx(tmp_path / "a.gz", imgs)
    assert np.array_equal(data.read_idx(tmp_path / "a.gz", 3), imgs)
    blob = (tmp_path / "a.gz").read_bytes()
    import gzip
    raw = gzip.decompress(blob)
    (tmp_path / "plain").write_bytes(raw)
    assert np.array_equal(data.read_idx(tmp_path / "plain", 3), imgs)
    from anekit.errors import ModelFormatError
    for content, match in [(raw[:10], "truncated IDX header"), (raw[:-1], "truncated"), (raw + b"x", "trailing"),
                           (b"\x00\x00\x08\x01" + raw[4:], "magic"),
                           (raw[:4] + (10 ** 6).to_bytes(4, "big") * 3 + raw[16:], "implausibly|truncated")]:
        (tmp_path / "bad").write_bytes(content)
        with pytest.raises(ModelFormatError, match=match):
            data.read_idx(tmp_path / "bad", 3)
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ModelFormatError, match="unreadable"):
        data.read_idx(tmp_path / "bad.gz", 3)


def test_mnist_folder_and_batches(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 30)):
        data.write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        data.write_idx(tmp_path / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))
    ds = data.load_mnist(tmp_path, test_size=20)
    assert ds.train_x.shape == (40, 1, 28, 28) and ds.test_x.shape == (20, 1, 28, 28)
    assert ds.train_x.max() <= 1.0
    b1, b2 = data.Batches(ds.train_x, ds.train_y, 8, seed=4), data.Batches(ds.train_x, ds.train_y, 8, seed=4)
    seq = [next(b1)["y"] for _ in range(7)]          # crosses an epoch boundary
    b2.restore({"position": 3, "seed": 4, "batch_size": 8})
    assert all(np.array_equal(next(b2)["y"], s) for s in seq[3:])
    with pytest.raises(CheckpointError):
        b2.restore({"position": 3, "seed": 5, "batch_size": 8})
    with pytest.raises(UsageError, match="train-images"):
        data.load_mnist(tmp_path.parent)          # a folder without the IDX files


def test_trainer_argument_errors(ds):
    loss, params, _ = digits.build(8, 16)
    with pytest.raises(UsageError, match="optimizer holds"):
        Trainer(loss, params[:2], optim.Adam(params), progress=False)
    with pytest.raises(UsageError, match="ak.optim"):
        Trainer(loss, params, object(), progress=False)
    tr = Trainer(loss, params, optim.Adam(params), progress=False)
    with pytest.raises(UsageError, match="batch must be a dict"):
        tr.fit([np.zeros(3)], 1)
    with pytest.raises(UsageError, match="no checkpoint_dir"):
        tr.resume()


def test_ane_backend_is_refused_off_a_mac_with_the_reason():
    import platform
    from anekit.errors import BackendUnavailableError
    if platform.system() == "Darwin":
        pytest.skip("on a Mac the ANE backend may be available")
    with pytest.raises(BackendUnavailableError, match="ane"):
        _trainer(backend="ane")


def test_estimate_step_per_chip():
    from anekit.train import estimate_step
    tr = _trainer()
    m1, m5 = estimate_step(tr, "m1"), estimate_step(tr, "m5")
    assert m1["total_us"] == pytest.approx(m1["train_step_us"] + m1["update_us"])
    assert 0 < m5["total_us"] < m1["total_us"]
