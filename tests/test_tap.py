"""
The twistd options and the service they make.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from chatroom.protocol import ChatFactory
from chatroom.room import Room
from chatroom.tap import ChatService, Options


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_first_run_creates_a_local_ca_and_reuses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = parse()
    assert first["created_ca"] == Path("certs/ca.pem")
    server_cert = (tmp_path / "certs" / "server.pem").read_bytes()
    second = parse()
    assert second["created_ca"] is None
    assert (tmp_path / "certs" / "server.pem").read_bytes() == server_cert
    assert (tmp_path / "state").is_dir()
    assert first["port"] == 6697 and first["interface"] == ""


@pytest.mark.parametrize("flag", ["--cert", "--key"])
def test_explicit_missing_files_are_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    monkeypatch.chdir(tmp_path)
    parse()  # creates certs/ so only the explicit file is missing
    with pytest.raises(usage.UsageError, match="cannot read the"):
        parse(flag, str(tmp_path / "missing.pem"))
    assert not (tmp_path / "missing.pem").exists()


def test_default_key_missing_beside_a_certificate_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    parse()
    (tmp_path / "certs" / "server-key.pem").unlink()
    with pytest.raises(usage.UsageError, match="private key"):
        parse()


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_bad_ports_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(usage.UsageError):
        parse("--port", port)


def test_state_that_is_a_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain").write_text("")
    with pytest.raises(usage.UsageError, match="state directory"):
        parse("--state", "plain")


def test_service_listens_with_tls_while_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    options = parse("--port", "7000", "--interface", "127.0.0.1")
    reactor = MemoryReactorClock()
    factory = ChatFactory(Room(reactor))
    service = ChatService(reactor, factory, options["tls"], options["port"], options["interface"])
    service.startService()
    ((port, listened_factory, context_factory, _backlog, interface),) = reactor.sslServers
    assert (port, listened_factory, context_factory, interface) == (
        7000,
        factory,
        options["tls"],
        "127.0.0.1",
    )
    assert reactor.tcpServers == []
    service.stopService()
    assert not service.running
