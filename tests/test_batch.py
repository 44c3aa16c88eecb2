"""``metamorph batch``: avatars x styles, prepare-then-stylize, resumable, locally and on real Ray.

Tiny engine settings and the labelled test guidance model keep each job to seconds.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from backend.avatar import random_params, sample_avatar, save_glb
from backend.batch import plan as plan_mod, run as run_mod

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ["resolution=32", "levels=2", "width=8", "steps=2", "views_per_step=1",
            "render_size=32", "inner_steps=1"]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    d = tmp_path_factory.mktemp("catalogue")
    (d / "avatars").mkdir()
    for seed in (1, 2):
        save_glb(sample_avatar(random_params(seed), texture_size=64), str(d / "avatars" / f"head{seed}.glb"))
    (d / "styles.txt").write_text("# two styles\na bronze statue\n\nan oil painting\n")
    return d


def _batch(catalogue, out, *extra, cache):
    cmd = [sys.executable, "-m", "backend.cli", "batch", "--avatars", str(catalogue / "avatars"),
           "--styles", str(catalogue / "styles.txt"), "--out", str(out), "--guidance", "test-tiny",
           "--pass-resolution", "32", "--texture-size", "32", "--cache-dir", str(cache), "--iterations", "1",
           *[a for s in SETTINGS for a in ("--setting", s)], *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def _rows(out):
    with (Path(out) / "summary.csv").open() as f:
        return list(csv.DictReader(f))


def test_a_batch_completes_and_a_second_run_does_no_work(catalogue, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    r = _batch(catalogue, out, "--prepare", cache=cache)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (6, 0, 0)  # 2 prepares + 2 x 2 styles
    rows = _rows(out)
    assert sorted((x["avatar"], x["kind"], x["style"]) for x in rows) == sorted(
        [(a, "prepare", "") for a in ("head1", "head2")]
        + [(a, "stylize", s) for a in ("head1", "head2") for s in ("a bronze statue", "an oil painting")])
    for x in rows:
        assert x["status"] == "done" and x["guidance_is_test_model"] == "true"
        if x["kind"] == "stylize":
            res = json.loads((Path(x["out"]) / "result.json").read_text())
            assert res["metadata"]["init"] == "meta"  # stylize ran after its avatar's prepare
            assert float(x["expression_dampening"]) > 0
    for a in ("head1", "head2"):
        assert (out / a / "contact_sheet.png").is_file()
    again = _batch(catalogue, out, "--prepare", cache=cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["done"] == 0 and json.loads(again.stdout)["skipped"] == 6


def test_an_interrupted_batch_resumes_where_it_stopped(catalogue, tmp_path):
    paths = plan_mod.list_avatars(catalogue / "avatars")
    styles = plan_mod.read_styles(catalogue / "styles.txt")
    entries = run_mod.avatar_entries(paths, _load)
    params = {"guidance": "test-tiny", "pass_resolution": 32, "texture_size": 32,
              "passes": ["color", "alpha", "original"],
              "settings": {k: int(v) for k, v in (s.split("=") for s in SETTINGS)}}
    tasks = plan_mod.plan(entries, styles, tmp_path / "out", prepare=False, stylize_params=params,
                          prepare_params={})
    runner = run_mod.LocalRunner(str(tmp_path / "cache"))
    stop = threading.Event()
    first = run_mod.run_tasks(tasks, runner, _load, on_outcome=lambda oc: stop.set(), stop=stop)
    assert [o.status for o in first].count("done") == 1  # interrupted after the first result
    assert not list((tmp_path / "out").rglob("*.tmp*"))  # nothing half-written
    rest = run_mod.run_tasks(tasks, runner, _load)
    assert sorted(o.status for o in rest) == ["done", "done", "done", "skipped"]
    # The resumed result equals a fresh run of the same task (same request, same seed).
    t = next(o.task for o in rest if o.status == "done")
    fresh = run_mod.run_tasks([plan_mod.Task(**{**t.__dict__, "out": str(tmp_path / "fresh")})], runner, _load)
    assert fresh[0].status == "done"
    a = np.asarray(_png(Path(t.out) / "textures"))
    b = np.asarray(_png(tmp_path / "fresh" / "textures"))
    np.testing.assert_array_equal(a, b)


def test_a_batch_on_ray_with_two_workers_matches_the_local_run(catalogue, tmp_path):
    pytest.importorskip("ray")
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    r1 = _batch(catalogue, local, cache=tmp_path / "c1")
    r2 = _batch(catalogue, on_ray, "--ray", "local", "--workers", "2", cache=tmp_path / "c2")
    assert r1.returncode == 0, r1.stderr[-3000:]
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert json.loads(r2.stdout)["done"] == 4
    rows1 = {(x["avatar"], x["style"]): x for x in _rows(local)}
    for x in _rows(on_ray):
        y = rows1[(x["avatar"], x["style"])]
        a = np.asarray(_png(Path(x["out"]) / "textures"), np.float32)
        b = np.asarray(_png(Path(y["out"]) / "textures"), np.float32)
        assert np.abs(a - b).max() <= 1.0  # same request and seed: same result (1/255 for thread sums)


def _load(path):
    from backend.avatar import load_avatar

    return load_avatar(path)


def _png(folder: Path):
    from PIL import Image

    return Image.open(sorted(folder.glob("*.png"))[0])
