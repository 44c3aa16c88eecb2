"""The stylize/prepare contracts (shared/stylize.py) and the style config factory
(backend/style/config.py): every bound defined once and followed by the server's
job validation (a real in-process server over ZeroMQ), the CLI and the engine; bad
values refused as typed errors at submit; the subcommand registry is loud."""

import math
import threading
import time

import pytest

from shared import stylize as contract
from shared.client import Client
from shared.errors import InvalidParams, TooLarge
from shared.protocol import Limits
from shared.stylize import PrepareRequest, StyleTerm, StylizeRequest
from backend.style import config
from backend.style.jobs import PrepareJob, StylizeJob
from backend.style.rig import turntable
from backend.style.testing import tiny_avatar

AV = tiny_avatar()


def params(**kw):
    r = StylizeRequest("a" * 64, [StyleTerm("text", 1.0, "a bronze statue")],
                       turntable(AV.vertices, 2, (0.0,), 360.0, resolution=64), frames=[0.0, 3.0],
                       guidance="test-tiny", texture_size=32, pass_resolution=32)
    p = r.to_params()
    p.update(kw)
    return p


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real server in this process (so a monkeypatched constant reaches it), stylize only."""
    from backend.server import ServerConfig
    from backend.server.router import Server

    srv = Server(ServerConfig(bind="tcp://127.0.0.1:*", cache_dir=str(tmp_path_factory.mktemp("srv"))),
                 handlers={"stylize": StylizeJob(), "prepare": PrepareJob()})
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    for _ in range(200):
        if srv.endpoint:
            break
        time.sleep(0.05)
    c = Client(srv.endpoint)
    c.hello()
    yield c, c.put_avatar(AV)
    c.close()
    srv.stop()
    t.join(timeout=20)


def cli(tmp_path, *extra):
    from backend.avatar import save_glb
    from backend.cli import main

    glb = tmp_path / "in.glb"
    if not glb.exists():
        save_glb(AV, str(glb))
    return main(["stylize", "--avatar", str(glb), "--prompt", "a bronze statue", "--guidance", "test-tiny",
                 "--views", "2", "--texture-size", "32", "--pass-resolution", "32", "--uv-resolution", "32",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
                 *extra])


def test_one_changed_bound_moves_the_server_and_the_cli_refusals(server, tmp_path, monkeypatch, capsys):
    client, aid = server
    monkeypatch.setattr(contract, "MAX_STEPS", 3)
    with pytest.raises(InvalidParams, match="Steps.*between 0 and 3"):
        client.submit("stylize", params(avatar_id=aid, steps=4))
    assert cli(tmp_path, "--steps", "4") == 2
    assert "between 0 and 3" in capsys.readouterr().err and not (tmp_path / "out").exists()
    # The engine setting of the same name is bounded by the same constant.
    with pytest.raises(InvalidParams, match=r"'steps'.*\[0, 3\]"):
        config.resolve("draft", {"steps": 4})

    monkeypatch.setattr(contract, "MAX_TEXTURE_SIZE", 24)
    with pytest.raises(InvalidParams, match="Texture size.*between 16 and 24"):
        client.submit("stylize", params(avatar_id=aid, steps=1))
    assert cli(tmp_path, "--steps", "1") == 2
    assert "between 16 and 24" in capsys.readouterr().err and not (tmp_path / "out").exists()

    monkeypatch.setattr(contract, "PRESET_NAMES", ("draft",))
    with pytest.raises(InvalidParams, match="preset"):
        client.submit("stylize", params(avatar_id=aid, steps=1, texture_size=16, preset="quality"))
    with pytest.raises(SystemExit):  # argparse's choices come from the same tuple
        cli(tmp_path, "--preset", "quality")


@pytest.mark.parametrize("field,value,error", [
    ("terms", [{"kind": "text", "weight": "heavy", "text": "x"}], InvalidParams),
    ("terms", [{"kind": "text", "weight": math.inf, "text": "x"}], InvalidParams),
    ("terms", [{"kind": "paint", "text": "x"}], InvalidParams),
    ("terms", [{"kind": "text", "text": "x", "colour": 1}], InvalidParams),
    ("terms", [{"kind": "text", "text": "z" * 5000}], TooLarge),
    ("terms", [{"kind": "text", "text": "t"}] * 100, TooLarge),
    ("terms", [{"kind": "text", "weight": 0.0, "text": "x"}], InvalidParams),
    ("terms", "a bronze statue", InvalidParams),
    ("frames", [0.0, math.nan], InvalidParams),
    ("frames", [], InvalidParams),
    ("frames", [0.0] * 300, TooLarge),
    ("steps", -1, InvalidParams), ("steps", 10 ** 6, InvalidParams), ("steps", 2.5, InvalidParams),
    ("identity", True, InvalidParams), ("identity", 1.5, InvalidParams),
    ("texture_size", 8192, InvalidParams), ("pass_resolution", 8, InvalidParams),
    ("passes", ["color", "xray"], InvalidParams), ("passes", ["color", "color"], InvalidParams),
    ("preset", "ultra", InvalidParams), ("seed", -3, InvalidParams),
    ("guidance", "", InvalidParams), ("name", "n" * 1000, TooLarge),
    ("time_budget_s", math.nan, InvalidParams),
    ("track", {"names": ["jawOpen"], "frames": [0, 1], "weights": [[0.5]]}, InvalidParams),
    ("track", {"names": ["jawOpen"], "frames": [0.0], "weights": [[math.nan]]}, InvalidParams),
    ("settings", {"resolution": "big"}, InvalidParams),
    ("settings", {"warp_factor": 9}, InvalidParams),
    ("settings", {"resolution": 100000}, InvalidParams),
    ("settings", {"resolution": 34, "levels": 3}, InvalidParams),
    ("cameras", [{"lens": 50}], InvalidParams),
    ("avatar_id", 5, InvalidParams),
])
def test_bad_stylize_fields_are_typed_errors_at_validate(field, value, error):
    with pytest.raises(error):
        StylizeJob().validate(params(**{field: value}), {}, limits=Limits())


def test_good_requests_pass_and_the_servers_limits_apply():
    StylizeJob().validate(params(), {}, limits=None)
    StylizeJob().validate(params(track={"names": ["jawOpen"], "frames": [0, 1], "weights": [[0.0], [1.0]]},
                                 settings={"resolution": 32, "width": 16}), {})
    with pytest.raises(TooLarge):  # the server's own, lower limit wins
        StylizeJob().validate(params(), {}, limits=Limits(max_cameras=1))
    with pytest.raises(InvalidParams, match="style_image_0"):
        StylizeJob().validate(params(terms=[{"kind": "image", "image_index": 0}]), {})
    with pytest.raises(InvalidParams, match="style_image_0"):  # a style image must be a uint8 image
        import numpy as np
        StylizeJob().validate(params(terms=[{"kind": "image", "image_index": 0}]),
                              {"style_image_0": np.zeros((16, 16, 3), np.float32)})


def test_prepare_contract_bounds_its_style_list_and_iterations():
    job = PrepareJob()
    ok = PrepareRequest("a" * 64, guidance="test-tiny", iterations=2, styles=["a zombie"]).to_params()
    job.validate(ok, {})
    assert PrepareRequest.from_params(ok) == PrepareRequest("a" * 64, guidance="test-tiny", iterations=2,
                                                            styles=["a zombie"])
    for bad, error in [({"iterations": "many"}, InvalidParams), ({"iterations": -1}, InvalidParams),
                       ({"iterations": contract.MAX_ITERATIONS + 1}, InvalidParams),
                       ({"styles": []}, InvalidParams), ({"styles": ["ok", "  "]}, InvalidParams),
                       ({"styles": ["z" * 5000]}, TooLarge),
                       ({"styles": ["s"] * (contract.MAX_STYLES + 1)}, TooLarge),
                       ({"styles": "a zombie"}, InvalidParams), ({"preset": "ultra"}, InvalidParams),
                       ({"settings": {"inner_steps": 0}}, InvalidParams)]:
        with pytest.raises(error):
            job.validate(dict(ok, **bad), {})
    with pytest.raises(TooLarge):  # the server's prompt length limit applies to the style list
        job.validate(dict(ok, styles=["x" * 50]), {}, limits=Limits(max_prompt_length=20))


def test_presets_are_data_files_with_declared_bounds_and_keys():
    assert config.preset_files() == sorted(contract.PRESET_NAMES)
    d, q = config.resolve("draft"), config.resolve("quality")
    assert d.network.resolution == 128 and q.network.resolution == 512 and q.adaptation.views_per_step == 8
    assert d.settings()["steps"] == 30 and q.settings()["meta_iterations"] == 300
    c = config.resolve("draft", {"resolution": 64, "steps": 20})
    assert c.network.resolution == 64 and c.adaptation.steps == 20 and c.network.width == d.network.width
    with pytest.raises(Exception):  # frozen
        c.network.width = 3
    # Checkpoint key: the meta init serves any adaptation or meta-training setting.
    c2 = config.resolve("draft", {"resolution": 64, "steps": 5, "inner_steps": 2})
    assert c.meta_key() == c2.meta_key()
    assert config.resolve("draft", {"resolution": 32}).meta_key() != c.meta_key()
    assert set(config.overridable()) == {"resolution", "width", "levels", "steps", "views_per_step", "render_size",
                                         "meta_iterations", "inner_steps"}
    assert config.bounds("steps") == (contract.MIN_STEPS, contract.MAX_STEPS)
    with pytest.raises(InvalidParams, match="Unknown preset"):
        config.resolve("ultra")


def test_every_registered_subcommand_module_registers_its_commands():
    import argparse

    from backend import cli

    names = set()
    for mod in cli.COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        mod.add_parser(sub)
        assert sub.choices, f"{mod.__name__} registered no subcommand"
        names |= set(sub.choices)
    assert {"serve", "stylize", "prepare", "sample-avatar"} <= names
    usage = cli.build_parser().format_help()
    assert all(n in usage for n in names)
