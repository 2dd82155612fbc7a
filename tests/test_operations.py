"""
Operations on the real daemon: graceful shutdown and certificate reload.
"""

from __future__ import annotations

import datetime
import json
import signal
import ssl
from pathlib import Path

import pytest

from chatroom.tls import create_local_ca
from chatroom.wire import parse_line
from tests.daemon import LineClient, running_daemon


def test_sigterm_tells_clients_and_exits_zero(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as daemon:
        clients = [daemon.connect() for _ in range(3)]
        for client in clients:
            client.read_until(lambda raw: parse_line(raw).kind == "list")
        daemon.process.send_signal(signal.SIGTERM)
        for client in clients:
            last = parse_line(client.read_until(lambda raw: parse_line(raw).kind == "info")[-1])
            assert last.text == "the server is shutting down"
            with pytest.raises(ConnectionError):
                client.read_line()
            client.close()
        assert daemon.process.wait(timeout=30) == 0
        assert "closed 3 connections" in daemon.output.decode()
    # No ban was ever set, so only the shutdown wrote the state file.
    saved = json.loads((tmp_path / "state" / "moderation.json").read_text())
    assert saved["bans"] == []


def test_sighup_reloads_the_certificate_and_refuses_a_broken_one(tmp_path: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    # Flood control off: wait_for_log may ask many times.
    with running_daemon(tmp_path, "--flood-rate", "0") as daemon:
        old = daemon.connect()
        old.read_until(lambda raw: parse_line(raw).kind == "list")
        server_pem = tmp_path / "certs" / "server.pem"
        good_pem = server_pem.read_bytes()

        server_pem.write_text("not a certificate")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_log("reload refused, keeping the old certificate", old)
        # The old certificate still serves new clients.
        fresh = daemon.connect()
        fresh.read_until(lambda raw: parse_line(raw).kind == "list")

        # A new CA and certificate: after SIGHUP, new clients must trust the new CA.
        server_pem.write_bytes(good_pem)
        old_ca = tmp_path / "old-ca.pem"
        old_ca.write_bytes(daemon.ca_path.read_bytes())
        create_local_ca(tmp_path / "certs", now)
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_log("reloaded the certificate", old)
        with pytest.raises(ssl.SSLCertVerificationError):
            LineClient.open("127.0.0.1", daemon.port, old_ca)
        renewed = daemon.connect()
        renewed.read_until(lambda raw: parse_line(raw).kind == "list")

        # The connection from before both reloads still works.
        old.send("still connected")
        got = parse_line(old.read_until(lambda raw: parse_line(raw).kind == "message")[-1])
        assert got.text == "still connected"
