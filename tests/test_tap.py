"""
The twistd options and the service they make.
"""

from __future__ import annotations

import datetime
import gc
import os
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from chatroom.stores.files import run_inline
from chatroom.stores.redis.link import parse_redis_url
from chatroom.tap import ChatService, Options, StartupError, build_service, freeze_start_up
from chatroom.tls import CertificateError, create_local_ca, missing_names
from chatroom.transports.irc.protocol import IRCFactory
from chatroom.transports.line.protocol import LineFactory


def options(*args: str) -> Options:
    config = Options()
    config.parseOptions(list(args))
    return config


def build(*args: str, reactor: MemoryReactorClock | None = None) -> ChatService:
    """
    Parse C{args} and build the service on a memory reactor, reading and
    making files as the daemon does.
    """
    return build_service(options(*args), reactor or MemoryReactorClock(), run_inline)


def parse(*args: str) -> ChatService:
    return build(*args)


def test_first_run_creates_a_local_ca_and_reuses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = options()
    assert not (tmp_path / "certs").exists()
    build_service(config, MemoryReactorClock(), run_inline)
    assert (tmp_path / "certs" / "ca.pem").is_file()
    server_cert = (tmp_path / "certs" / "server.pem").read_bytes()
    parse()
    assert (tmp_path / "certs" / "server.pem").read_bytes() == server_cert
    assert (tmp_path / "state").is_dir()
    assert config["port"] == 6697 and config["interface"] == ""
    assert config["listen"] == [("line", "ssl:6697")]


@pytest.mark.parametrize("flag", ["--cert", "--key"])
def test_explicit_missing_files_are_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    monkeypatch.chdir(tmp_path)
    parse()  # creates certs/ so only the explicit file is missing
    with pytest.raises(StartupError, match="cannot read the"):
        parse(flag, str(tmp_path / "missing.pem"))
    assert not (tmp_path / "missing.pem").exists()


def test_default_key_missing_beside_a_certificate_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    parse()
    (tmp_path / "certs" / "server-key.pem").unlink()
    with pytest.raises(StartupError, match="private key"):
        parse()


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_bad_ports_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(usage.UsageError):
        options("--port", port)


def test_state_that_is_a_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain").write_text("")
    with pytest.raises(StartupError, match="state directory"):
        parse("--state", "plain")


def test_service_listens_with_tls_while_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    reactor = MemoryReactorClock()
    service = build("--port", "7000", "--interface", "127.0.0.1", reactor=reactor)
    service.startService()
    ((port, listened_factory, context_factory, _backlog, interface),) = reactor.sslServers
    assert (port, context_factory, interface) == (7000, service.tls, "127.0.0.1")
    assert isinstance(listened_factory, LineFactory)
    assert reactor.tcpServers == []
    service.stopService()
    assert not service.running


def test_listen_is_repeatable_and_takes_any_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    reactor = MemoryReactorClock()
    service = build(
        "--listen",
        "line:ssl:7001:interface=\\:\\:1",
        "--listen",
        "line:tcp:7002:interface=127.0.0.1",
        "--listen",
        "line:ssl:port=7003:backlog=5",
        reactor=reactor,
    )
    service.startService()
    assert [(p, c, i) for p, _, c, _, i in reactor.sslServers] == [
        (7001, service.tls, "::1"),
        (7003, service.tls, ""),
    ]
    assert reactor.sslServers[1][3] == 5
    ((port, factory, _backlog, interface),) = reactor.tcpServers
    assert (port, interface) == (7002, "127.0.0.1") and isinstance(factory, LineFactory)
    service.stopService()


def test_irc_listeners_get_the_irc_factory_on_the_same_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    reactor = MemoryReactorClock()
    service = build(
        "--listen",
        "irc:ssl:6698",
        "--listen",
        "irc:tcp:6667:interface=127.0.0.1",
        "--listen",
        "line:tcp:7002:interface=127.0.0.1",
        "--irc-channel",
        "#lobby",
        reactor=reactor,
    )
    service.startService()
    ((port, irc_tls, context, _, _),) = reactor.sslServers
    assert (port, context) == (6698, service.tls) and isinstance(irc_tls, IRCFactory)
    (irc_port, irc_tcp, _, _), (line_port, line, _, _) = reactor.tcpServers
    assert (irc_port, line_port) == (6667, 7002)
    assert isinstance(irc_tcp, IRCFactory) and isinstance(line, LineFactory)
    assert irc_tcp.codec.channel == "#lobby"
    assert irc_tcp.sessions is line.sessions is irc_tls.sessions
    service.stopService()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("xmpp:tcp:5222", "the kind must be one of line, irc"),
        ("line", "give an endpoint"),
        ("line:", "give an endpoint"),
    ],
)
def test_bad_listen_kinds_are_refused(spec: str, message: str) -> None:
    with pytest.raises(usage.UsageError, match=message):
        options("--listen", spec)


@pytest.mark.parametrize("endpoint", ["ssl:http", "ssl:7000:bogus=1", "nonsense:7000"])
def test_bad_endpoints_are_startup_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StartupError, match=f"--listen line:{endpoint}"):
        parse("--listen", f"line:{endpoint}")


def test_start_up_removes_unfinished_saves_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    leftover = state / ".moderation.json.abcd1234.tmp"
    leftover.write_text("{")
    (state / "notes.txt").write_text("mine")
    parse()
    assert not leftover.exists() and (state / "notes.txt").read_text() == "mine"


def test_hostnames_go_into_the_local_certificate_and_bind_the_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    service = parse("--hostname", "chat.example.org", "--hostname", "192.0.2.7")
    cert = tmp_path / "certs" / "server.pem"
    assert missing_names(cert, ["chat.example.org", "192.0.2.7"]) == []
    # The existing certificate lacks a name given later: a clear error, nothing made.
    with pytest.raises(StartupError, match=r"is not for other\.example\.org: move certs/ away"):
        parse("--hostname", "other.example.org")
    # A reload must cover the names too.
    create_local_ca(tmp_path / "plain", datetime.datetime.now(datetime.UTC))
    for name in ("server.pem", "server-key.pem"):
        (tmp_path / "certs" / name).write_bytes((tmp_path / "plain" / name).read_bytes())
    with pytest.raises(CertificateError, match=r"is not for chat\.example\.org"):
        service.tls.reload()


def test_a_bad_hostname_is_refused() -> None:
    with pytest.raises(usage.UsageError, match="--hostname"):
        options("--hostname", "not a name")


def test_addresses_are_cloaked_unless_public_addresses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    public = build("--public-addresses", "--state", "open")
    assert public.sessions.room.cloak is None
    assert not (tmp_path / "open" / "cloak.key").exists()
    cloaked = build()
    cloak = cloaked.sessions.room.cloak
    assert cloak is not None and cloak("10.0.0.1").startswith("cloak-")
    # The same key on the next start: the same cloaks.
    again = build().sessions.room.cloak
    assert again is not None and again("10.0.0.1") == cloak("10.0.0.1")
    (tmp_path / "state" / "cloak.key").write_bytes(b"")
    with pytest.raises(StartupError, match=r"cloak key .* too short"):
        build()


def test_metrics_serve_on_their_own_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    reactor = MemoryReactorClock()
    service = build("--metrics", "tcp:9100:interface=127.0.0.1", reactor=reactor)
    assert service.sampler is not None
    service.startService()
    ports = sorted(port for port, *_ in reactor.tcpServers)
    assert ports == [9100]
    assert service.sessions.meter is service.sampler.metrics
    service.stopService()
    assert build().sampler is None
    with pytest.raises(StartupError, match="--metrics nonsense:9"):
        build("--metrics", "nonsense:9")


def test_the_readme_table_gives_every_limit_and_its_default() -> None:
    from chatroom.tap import LIMIT_OPTIONS

    readme = (Path(__file__).resolve().parent.parent / "README.rst").read_text(encoding="utf-8")
    rows = {line.split()[0]: line.split()[1] for line in readme.splitlines() if line.startswith("``--")}
    for option, defaults, field, _ in LIMIT_OPTIONS:
        default = getattr(defaults, field)
        assert f"``--{option}``" in rows, option
        assert float(rows[f"``--{option}``"]) == default, option


def test_the_protocol_names_every_limit_a_client_can_meet() -> None:
    protocol = (Path(__file__).resolve().parent.parent / "docs" / "protocol.rst").read_text(encoding="utf-8")
    for option in (
        "byte-rate",
        "address-byte-rate",
        "answer-rate",
        "answer-burst",
        "memory-budget",
        "max-handshakes",
        "notice-rate",
        "notice-interval",
        "bans-page",
        "keepalive-idle",
        "keepalive-interval",
        "keepalive-count",
        "first-line-timeout",
        "send-queue",
    ):
        assert f"``--{option}``" in protocol, option


def test_new_limits_are_options() -> None:
    config = options(
        "--byte-rate", "100", "--answer-burst", "5000", "--max-handshakes", "7", "--notice-interval", "2",
        "--oper-checks", "3", "--bans-page", "10", "--keepalive-idle", "30", "--memory-budget", "1000000",
    )  # fmt: skip
    client, connection, room = config["client_limits"], config["connection_limits"], config["room_limits"]
    assert (client.byte_rate, client.answer_burst, client.keepalive_idle) == (100, 5000, 30)
    assert client.memory_budget == 1_000_000
    assert connection.handshakes == 7
    assert (room.notice_interval, room.oper_checks, room.bans_page) == (2, 3, 10)
    with pytest.raises(usage.UsageError, match="--max-handshakes must be at most --max-connections"):
        options("--max-connections", "10", "--max-handshakes", "20")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--redis", "http://127.0.0.1:6379"), "--redis: .*use redis://"),
        (("--redis", "redis://"), "--redis: .*no host"),
        (("--redis", "redis://127.0.0.1:6379/zero"), "--redis: .*database number"),
        (("--redis", "redis://127.0.0.1:99999"), "--redis: "),
        (("--node-name", "two words"), "--node-name"),
        (("--node-timeout", "0.5"), "--node-timeout"),
    ],
)
def test_bad_redis_options_are_refused(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(usage.UsageError, match=message):
        options(*args)


def test_redis_urls() -> None:
    plain = parse_redis_url("redis://127.0.0.1/2")
    assert (plain.host, plain.port, plain.db, plain.tls, plain.password) == (
        "127.0.0.1",
        6379,
        2,
        False,
        None,
    )
    secure = parse_redis_url("rediss://user:p%40ss@redis.example:6380")
    assert (secure.port, secure.db, secure.tls, secure.username, secure.password) == (
        6380,
        0,
        True,
        "user",
        "p@ss",
    )
    assert options()["node-name"].endswith(f"-{os.getpid()}")


def test_with_redis_the_listeners_wait_for_the_room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    reactor = MemoryReactorClock()
    service = build("--redis", "redis://127.0.0.1:1/0", "--node-name", "a", reactor=reactor)
    assert service.shared is not None and service.shared.node == "a"
    service.privilegedStartService()
    service.startService()
    # Connecting to Redis (not there), and not listening yet.
    assert reactor.tcpClients and not reactor.tcpServers and not reactor.sslServers


def test_a_bad_redis_ca_is_a_startup_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    for path, message in (("missing.pem", "No such file"), ("junk.pem", "not a PEM certificate")):
        with pytest.raises(StartupError, match=f"--redis-ca {path}: {message}"):
            build("--redis", "rediss://localhost:1/0", "--redis-ca", path)


def test_what_start_up_made_is_frozen_out_of_full_collections() -> None:
    class Loaded:
        me: object

    state = Loaded()
    state.me = state
    assert any(o is state for o in gc.get_objects())
    try:
        freeze_start_up()
        # Frozen objects are not walked by collections any more.
        assert gc.get_freeze_count() > 0
        assert not any(o is state for o in gc.get_objects())
    finally:
        gc.unfreeze()
