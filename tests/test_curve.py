"""Security: exposed binds need CURVE or --insecure; with CURVE on, only clients
whose public key is in the authorized folder get answers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, start_server
from shared.client import Client
from shared.errors import ServerUnavailable


def metamorph(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_non_loopback_bind_without_curve_refuses_to_start(tmp_path):
    r = metamorph("serve", "--bind", "tcp://0.0.0.0:*", "--device", "cpu", "--cache-dir", str(tmp_path))
    assert r.returncode != 0
    assert "Refusing to listen on tcp://0.0.0.0:*" in r.stderr and "--insecure" in r.stderr
    assert not (tmp_path / "metamorph").exists()


def test_keys_generate_writes_pairs_and_refuses_overwrite(tmp_path):
    r = metamorph("keys", "generate", "--out", str(tmp_path), "--name", "alice")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "alice.key").read_text().count("public-key") == 1
    assert "secret-key" in (tmp_path / "alice.key_secret").read_text()
    assert (tmp_path / "alice.key_secret").stat().st_mode & 0o077 == 0
    again = metamorph("keys", "generate", "--out", str(tmp_path), "--name", "alice")
    assert again.returncode != 0 and "--force" in again.stderr


def test_curve_only_authorized_clients_get_answers(tmp_path):
    from backend.keys import generate

    keys, allowed = tmp_path / "keys", tmp_path / "authorized"
    server_pub, server_sec = generate(keys, "server")
    alice_pub, alice_sec = generate(keys, "alice")
    _, mallory_sec = generate(keys, "mallory")
    allowed.mkdir()
    (allowed / "alice.key").write_bytes(alice_pub.read_bytes())

    sp = start_server("--curve-secret-key", str(server_sec), "--curve-authorized-dir", str(allowed),
                      tmp_path=tmp_path / "srv",
                      client_kw={"server_public_key": server_pub, "client_secret_key": alice_sec})
    try:
        with sp.client(server_public_key=server_pub, client_secret_key=alice_sec) as alice:
            info = alice.hello()
            assert info["curve"] is True
            result = alice.wait(alice.submit("selfcheck", {"steps": 1}), timeout_s=20)
            assert result.body["result"]["steps"] == 1

        for kw in ({"server_public_key": server_pub, "client_secret_key": mallory_sec},  # unknown key
                   {}):                                                                 # no CURVE
            with Client(sp.endpoint, timeout_s=1.5, server_timeout_s=1.5, **kw) as stranger:
                with pytest.raises(ServerUnavailable):
                    stranger.hello()
        assert sp.alive
    finally:
        sp.stop()


@pytest.mark.parametrize("endpoint, local", [
    ("tcp://127.0.0.1:5557", True), ("tcp://localhost:5557", True), ("tcp://[::1]:5557", True),
    ("tcp://127.8.0.3:1", True), ("ipc:///tmp/metamorph.sock", True),
    ("tcp://0.0.0.0:5557", False), ("tcp://*:5557", False), ("tcp://192.168.1.5:5557", False),
    ("tcp://eth0:5557", False), ("tcp://example.com:5557", False)])
def test_what_counts_as_loopback(endpoint, local):
    from backend.server import ConfigError, ServerConfig, check_security, is_loopback

    assert is_loopback(endpoint) == local
    if local:
        assert check_security(ServerConfig(bind=endpoint)) == "loopback"
    else:
        with pytest.raises(ConfigError, match="Refusing"):
            check_security(ServerConfig(bind=endpoint))  # no CURVE, no --insecure
        assert check_security(ServerConfig(bind=endpoint, insecure=True)) == "insecure"


def test_insecure_flag_starts_with_a_loud_warning(tmp_path):
    sp = start_server("--insecure", bind="tcp://0.0.0.0:*", tmp_path=tmp_path)
    try:
        assert "INSECURE: listening on tcp://0.0.0.0:" in sp.log()
    finally:
        sp.stop()
