"""Security: exposed binds need CURVE or --insecure; with CURVE on, only clients
whose public key is in the authorized folder get answers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, start_server
from shared import protocol
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


# --- issue 14.2 / 14.9: jobs belong to a key; key files checked at start ------------------------

def test_curve_jobs_belong_to_the_key_and_bad_key_files_are_skipped_loudly(tmp_path):
    import os
    import time
    import uuid

    import zmq.auth

    from backend.keys import generate
    from test_server_hardening import LONG, ask, raw_socket, receive, wait_stage

    keys, allowed = tmp_path / "keys", tmp_path / "authorized"
    server_pub, server_sec = generate(keys, "server")
    alice_pub, alice_sec = generate(keys, "alice")
    bob_pub, bob_sec = generate(keys, "bob")
    allowed.mkdir()
    for p in (alice_pub, bob_pub):
        (allowed / p.name).write_bytes(p.read_bytes())
    (allowed / "broken.key").write_text("this is not a certificate\n")
    os.chmod(server_sec, 0o644)  # readable by others: refused unless --insecure-keys

    args = ("--curve-secret-key", str(server_sec), "--curve-authorized-dir", str(allowed))
    r = metamorph("serve", *args, "--device", "cpu", "--cache-dir", str(tmp_path / "cache"))
    assert r.returncode == 2 and "chmod 600" in r.stderr and "--insecure-keys" in r.stderr, r.stderr

    sp = start_server(*args, "--insecure-keys", tmp_path=tmp_path / "srv",
                      client_kw={"server_public_key": server_pub, "client_secret_key": alice_sec})
    try:
        log = sp.log()
        assert "SKIPPING malformed CURVE key file" in log and "broken.key" in log
        assert "can be read by other users" in log
        server_key = zmq.auth.load_certificate(str(server_pub))[0]

        def curve(secret_file):
            pub, sec = zmq.auth.load_certificate(str(secret_file))
            return {"curve_serverkey": server_key, "curve_publickey": pub, "curve_secretkey": sec}

        ident = uuid.uuid4().bytes
        alice = raw_socket(sp.endpoint, ident, curve(alice_sec))
        jid = ask(alice, "submit", LONG).body["job_id"]
        wait_stage(alice, jid, "selfcheck")
        bob = raw_socket(sp.endpoint, ident, curve(bob_sec))  # an authorized key, alice's routing id
        assert ask(bob, "status", {"job_id": jid}, timeout_s=1.5) is None
        bob.close(0)
        alice.close(0)
        time.sleep(0.5)
        bob = raw_socket(sp.endpoint, ident, curve(bob_sec))  # alice gone: bob gets her routing id...
        reply = ask(bob, "status", {"job_id": jid})
        assert reply.kind == "error" and reply.body["code"] == "unknown_job"  # ...but not her job
        assert ask(bob, "cancel", {"job_id": jid}).body["code"] == "unknown_job"
        assert not [m for m in receive(bob, 0.5) if m.job_id == jid]
        bob.close(0)
        time.sleep(0.3)
        alice = raw_socket(sp.endpoint, ident, curve(alice_sec))  # alice back with her key: still hers
        assert ask(alice, "status", {"job_id": jid}).body["jobs"][0]["state"] == "running"
        assert ask(alice, "cancel", {"job_id": jid}).body["state"] == "cancelling"
        assert any(m.kind == "error" and m.body["code"] == "cancelled" and m.job_id == jid
                   for m in receive(alice, 2.0))
        alice.close(0)
        # a result that finishes while its owner is away waits for the owner, not for the routing id
        ident = uuid.uuid4().bytes
        alice = raw_socket(sp.endpoint, ident, curve(alice_sec))
        jid = ask(alice, "submit", {"job": "selfcheck", "params": {"steps": 10, "step_delay_s": 0.05}}).body["job_id"]
        alice.close(0)
        time.sleep(1.5)
        alice = raw_socket(sp.endpoint, ident, curve(alice_sec))
        alice.send_multipart(protocol.encode("heartbeat", "hb", {}))
        got = receive(alice, 1.5)
        assert any(m.kind == "result" and m.job_id == jid for m in got), [m.kind for m in got]
        alice.close(0)
        assert sp.alive
    finally:
        sp.stop()


def test_curve_folder_without_a_valid_key_refuses_to_start_naming_the_file(tmp_path):
    from backend.keys import generate

    _, server_sec = generate(tmp_path / "keys", "server")
    allowed = tmp_path / "authorized"
    allowed.mkdir()
    (allowed / "typo.key").write_text('metadata\ncurve\n    public-key = "tooshort"\n')
    r = metamorph("serve", "--curve-secret-key", str(server_sec), "--curve-authorized-dir", str(allowed),
                  "--device", "cpu", "--cache-dir", str(tmp_path / "cache"))
    assert r.returncode == 2 and "typo.key" in r.stderr and "no valid client public key" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_key_folders_are_private_whatever_the_umask(tmp_path):
    import os

    old = os.umask(0)
    try:
        r = metamorph("keys", "generate", "--out", str(tmp_path / "new" / "keys"), "--name", "k")
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "new" / "keys").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "new" / "keys" / "k.key_secret").stat().st_mode & 0o077 == 0
