"""Issue 14.7 / 14.8: caches the server cannot write are typed errors (and stop ``serve``
at start); checkpoints are verified on load, healed when damaged, never half-written."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest

from conftest import ROOT
from shared.errors import CacheUnavailable

torch = pytest.importorskip("torch")

from backend import checkpoints  # noqa: E402


def serve(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend.cli", "serve", "--device", "cpu", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_serve_refuses_to_start_when_its_cache_folder_cannot_be_made(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    r = serve("--cache-dir", str(blocker / "cache"))
    assert r.returncode == 2, r.stderr
    assert str(blocker / "cache") in r.stderr and "--cache-dir" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_checkpoint_round_trips_with_its_checksum(tmp_path):
    p = tmp_path / "style" / "fit-abc.pt"
    state = {"w": torch.arange(6.0).reshape(2, 3), "step": 7}
    checkpoints.save_atomic(p, state)
    assert checkpoints.sidecar_path(p).is_file()
    back = checkpoints.load_verified(p)
    assert back["step"] == 7 and torch.equal(back["w"], state["w"])
    assert sorted(x.name for x in p.parent.iterdir()) == ["fit-abc.pt", "fit-abc.pt.sha256"]
    assert checkpoints.load_verified(tmp_path / "missing.pt") is None


@pytest.mark.parametrize("damage", ["truncate", "garbage", "no_sidecar", "flip_byte"])
def test_a_damaged_checkpoint_is_moved_aside_and_reported_missing(tmp_path, damage, caplog):
    p = tmp_path / "meta-abc.pt"
    checkpoints.save_atomic(p, {"w": torch.ones(1000)})
    data = p.read_bytes()
    if damage == "truncate":
        p.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        p.write_bytes(b"\x00garbage" * 100)
    elif damage == "no_sidecar":
        checkpoints.sidecar_path(p).unlink()
    else:
        p.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    with caplog.at_level("WARNING", logger="metamorph.checkpoints"):
        assert checkpoints.load_verified(p) is None
    assert "damaged" in caplog.text
    assert not p.exists() and not checkpoints.sidecar_path(p).exists()
    assert [x.name.startswith("meta-abc.pt.bad-") for x in tmp_path.iterdir()] == [True]
    checkpoints.save_atomic(p, {"w": torch.zeros(3)})  # rebuilt in its place
    assert torch.equal(checkpoints.load_verified(p)["w"], torch.zeros(3))


def test_a_checksum_valid_file_the_loader_refuses_is_healed_too(tmp_path):
    p = tmp_path / "fit.pt"
    checkpoints.write_bytes_atomic(p, b"not a torch file at all")
    assert checkpoints.load_verified(p) is None and not p.exists()


FILL_DISK = r"""
import resource, signal, sys
from pathlib import Path
import torch
from backend import checkpoints
from shared.errors import CacheUnavailable
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # a "disk" that fills after 4 KB
out = Path(sys.argv[1])
try:
    checkpoints.save_atomic(out / "big.pt", {"w": torch.ones(100_000)})
except CacheUnavailable as e:
    print("CacheUnavailable", e.details["path"], e.message)
"""


def test_a_failed_write_raises_cache_unavailable_and_leaves_no_tmp(tmp_path):
    r = subprocess.run([sys.executable, "-c", FILL_DISK, str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("CacheUnavailable"), r.stdout + r.stderr
    assert "free some disk space" in r.stdout
    assert list(tmp_path.iterdir()) == []  # no big.pt, no .tmp, no sidecar


def test_ensure_writable_dir_names_the_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(CacheUnavailable, match="cannot be created or written") as e:
        checkpoints.ensure_writable_dir(tmp_path / "f" / "cache")
    assert e.value.details["path"].endswith("f/cache")
    assert checkpoints.ensure_writable_dir(tmp_path / "ok") == (tmp_path / "ok").resolve()


def test_a_job_that_hits_a_full_disk_is_a_typed_error_not_internal():
    from backend.server.runner import Job, typed_error

    job = Job(id="j" * 32, kind="prepare", handler=None, identity=b"i", owner="conn:1", request_id="r",
              params={}, arrays={})
    try:
        with open("/dev/full", "wb") as f:  # a real device that is always full
            f.write(b"x" * 10)
            f.flush()
    except OSError as e:
        err = typed_error(job, e, "cpu")
    assert isinstance(err, CacheUnavailable) and err.details["errno"] == errno.ENOSPC
    assert "free disk space" in err.message
