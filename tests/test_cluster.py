"""
One room across several daemon processes through a real redis-server:
every command behaves as on one node, and a node or Redis going away loses
no member's messages on the others.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from chatroom.tls import create_local_ca
from chatroom.wire import ServerLine, parse_line
from tests.daemon import Daemon, LineClient, running_daemon
from tests.redis_server import RedisServer, free_port, running_redis

NODE_TIMEOUT = "3"
DEADLINE = 20.0


@contextmanager
def nodes(tmp_path: Path, redis: RedisServer, count: int, *args: str) -> Iterator[list[Daemon]]:
    """
    C{count} daemons sharing one room through C{redis}, with one CA (each
    in its own directory, named a, b, c...).
    """
    with ExitStack() as stack:
        daemons: list[Daemon] = []
        for index in range(count):
            name = "abcdefgh"[index]
            daemons.append(stack.enter_context(node(tmp_path, redis, name, *args)))
        yield daemons


@contextmanager
def node(tmp_path: Path, redis: RedisServer, name: str, *args: str) -> Iterator[Daemon]:
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    first = tmp_path / "a" / "certs"
    if name != "a" and first.exists() and not (directory / "certs").exists():
        shutil.copytree(first, directory / "certs")
    flags = ("--redis", redis.url, "--node-name", name, "--node-timeout", NODE_TIMEOUT, *args)
    with running_daemon(directory, *flags) as daemon:
        yield daemon


def joined(daemon: Daemon, name: str) -> LineClient:
    return daemon.connect().join_as(name)


def listed(client: LineClient, expected: set[str]) -> tuple[str, ...]:
    """
    Ask for /list until it names C{expected} (the room converges), before
    a deadline; the last list.
    """
    deadline = time.monotonic() + DEADLINE
    while True:
        client.send("/list")
        # Admins are marked with @.
        names = tuple(name.removeprefix("@") for name in client.read_kind("list")[-1].args)
        if set(names) == expected or time.monotonic() > deadline:
            return names


def from_source(client: LineClient, kind: str, source: str) -> ServerLine:
    """
    The next line of C{kind} from C{source}.
    """
    raw = client.read_until(lambda raw: (p := parse_line(raw)).kind == kind and p.source == source)
    return parse_line(raw[-1])


def said(client: LineClient, sender: str, text: str) -> None:
    assert from_source(client, "message", sender).text == text


def test_chat_whisper_list_whois_across_two_nodes(tmp_path: Path, redis_server: RedisServer) -> None:
    with nodes(tmp_path, redis_server, 2) as (a, b):
        alice = joined(a, "alice")
        bob = joined(b, "bob")
        assert set(listed(alice, {"alice", "bob"})) == {"alice", "bob"}
        assert set(listed(bob, {"alice", "bob"})) == {"alice", "bob"}
        alice.send("hello from a")
        said(bob, "alice", "hello from a")
        said(alice, "alice", "hello from a")
        bob.send("/whisper alice psst")
        line = alice.read_kind("whisper")[-1]
        assert (line.source, line.text) == ("bob", "psst")
        bob.send("/whois alice")
        whois = bob.read_kind("whois")[-1]
        assert (whois.fields["name"], whois.fields["admin"]) == ("alice", "yes")
        bob.send("/nick robert")
        assert alice.read_kind("rename", "robert")[-1].source == "bob"
        alice.send("/whisper robert renamed?")
        assert bob.read_kind("whisper")[-1].text == "renamed?"


def test_a_newcomer_on_either_node_gets_the_whole_room_s_history(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with nodes(tmp_path, redis_server, 2) as (a, b):
        alice = joined(a, "alice")
        bob = joined(b, "bob")
        alice.send("said on a")
        said(bob, "alice", "said on a")
        bob.send("said on b")
        said(alice, "bob", "said on b")
        for daemon in (a, b):
            lines = daemon.connect().read_kind("historyend")
            chat = [
                (line.source, line.text)
                for line in lines
                if line.kind == "history" and line.args[0] == "message"
            ]
            assert chat == [("alice", "said on a"), ("bob", "said on b")]


def test_a_name_is_claimed_once_across_nodes(tmp_path: Path, redis_server: RedisServer) -> None:
    with nodes(tmp_path, redis_server, 2) as (a, b):
        alice = joined(a, "alice")
        other = b.connect()
        other.read_kind("list")
        other.send("/nick Alice")
        assert other.read_kind("error")[-1].text == "the name Alice is taken: choose another"
        other.send("/nick a1ice")
        assert "looks too much like alice" in other.read_kind("error")[-1].text
        alice.send("/quit")
        from_source(other, "leave", "alice")
        # alice's name is free on every node once she has left.
        other.send("/nick alice")
        other.read_kind("rename", "alice")


def test_kick_ban_and_admin_succession_across_nodes(tmp_path: Path, redis_server: RedisServer) -> None:
    with nodes(tmp_path, redis_server, 3) as (a, b, c):
        alice = joined(a, "alice")
        bob = joined(b, "bob")
        carol = joined(c, "carol")
        listed(alice, {"alice", "bob", "carol"})
        listed(carol, {"alice", "bob", "carol"})
        # alice came first: the admin, room-wide; bob on b is not.
        bob.send("/kick carol")
        assert bob.read_kind("error")[-1].text.startswith("permission denied")
        alice.send("/kick carol enough")
        assert carol.read_kind("kick", "carol")[-1].source == "alice"
        with pytest.raises(ConnectionError):
            carol.read_until(lambda raw: False)
        assert "kicked by alice" in from_source(bob, "leave", "carol").text
        alice.send("/ban bob 1h spam")
        assert bob.read_kind("banned")
        with pytest.raises(ConnectionError):
            bob.read_until(lambda raw: False)
        # The name ban reaches new members on every node.
        newcomer = c.connect()
        newcomer.read_kind("list")
        newcomer.send("/nick bob")
        assert newcomer.read_kind("error")[-1].text.startswith("the name bob is banned until ")
        newcomer.send("/nick dave")
        newcomer.read_kind("rename")
        listed(alice, {"alice", "dave"})
        # alice leaves: the longest-connected member on another node succeeds.
        alice.send("/quit")
        line = newcomer.read_kind("admin", "dave", "admin=yes")[-1]
        assert "alice" in line.text
        newcomer.send("/bans")
        newcomer.read_kind("banlist", "count=1")


def test_a_killed_node_s_members_leave_and_free_their_names(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with nodes(tmp_path, redis_server, 2) as (a, b):
        alice = joined(a, "alice")
        joined(b, "bob")
        listed(alice, {"alice", "bob"})
        b.process.send_signal(signal.SIGKILL)
        started = time.monotonic()
        left = from_source(alice, "leave", "bob")
        assert "server b is gone" in left.text
        assert time.monotonic() - started < float(NODE_TIMEOUT) + 5
        alice.send("still here")
        said(alice, "alice", "still here")
        newcomer = a.connect()
        newcomer.read_kind("list")
        newcomer.send("/nick bob")
        newcomer.read_kind("rename")


def test_redis_killed_and_restarted_while_clients_chat(tmp_path: Path, redis_server: RedisServer) -> None:
    with nodes(tmp_path, redis_server, 2) as (a, b):
        alice = joined(a, "alice")
        bob = joined(b, "bob")
        listed(alice, {"alice", "bob"})
        redis_server.kill()
        # Each node keeps its own clients.
        alice.send("while redis is down")
        said(alice, "alice", "while redis is down")
        # A name cannot be claimed meanwhile: one clear error line.
        late = a.connect()
        assert late.read_kind("error")[-1].text.startswith("the room's shared store is unreachable")
        assert b"lost the connection to Redis" in a.output
        redis_server.start()
        # What alice said meanwhile reaches bob once Redis is back.
        said(bob, "alice", "while redis is down")
        bob.send("after the restart")
        said(alice, "bob", "after the restart")
        assert set(listed(bob, {"alice", "bob"})) == {"alice", "bob"}


def test_a_node_started_late_catches_up(tmp_path: Path, redis_server: RedisServer) -> None:
    with node(tmp_path, redis_server, "a") as a:
        alice = joined(a, "alice")
        alice.send("/ban 198.51.100.7")
        alice.read_kind("ban")
        with node(tmp_path, redis_server, "b") as b:
            bob = joined(b, "bob")
            assert set(listed(bob, {"alice", "bob"})) == {"alice", "bob"}
            bob.send("/whois alice")
            assert bob.read_kind("whois")[-1].fields["admin"] == "yes"
            alice.send("/bans")
            alice.read_kind("banlist", "count=1")
            bob.send("hi alice")
            said(alice, "bob", "hi alice")


def test_no_redis_option_needs_no_redis(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as daemon:
        joined(daemon, "alice")
    assert b"Redis" not in daemon.output


def test_e2e_locks_and_forwards_across_nodes(tmp_path: Path, redis_server: RedisServer) -> None:
    from tests.test_e2e_daemon import LiveParty, everyone_secure

    secret = f"across nodes {os.urandom(8).hex()}"
    with nodes(tmp_path, redis_server, 2) as (a, b):
        alice = LiveParty(a, "alice")
        bob = LiveParty(b, "bob")
        carol = LiveParty(b, "carol")
        parties = [alice, bob, carol]
        # Each learns every key, whichever node it registered on: the room locks.
        everyone_secure(parties)
        assert all(party.client.secure for party in parties)
        alice.type(secret)
        for party in parties:
            party.until(party.got(secret))
        alice.type(f"/whisper carol {secret} whispered")
        carol.until(carol.got(f"{secret} whispered"))
        # A member leaving one node drops its key on the other.
        carol.connection.close()
        alice.until(lambda: "carol" not in alice.client.directory)
    for daemon in (a, b):
        assert secret.encode() not in bytes(daemon.output)


def test_two_nodes_share_one_port_with_reuse_port(tmp_path: Path, redis_server: RedisServer) -> None:
    port = free_port()
    with nodes(tmp_path, redis_server, 2, "--port", str(port), "--reuse-port") as (a, b):
        assert a.port == b.port == port
        clients = [joined(a, f"user{n}") for n in range(12)]
        # The kernel spread them: both nodes have some (12 all on one: 1 in 2048).
        assert b" joined from " in a.output and b" joined from " in b.output
        clients[0].send("to everyone")
        for client in clients[1:]:
            said(client, "user0", "to everyone")


def test_a_node_stopped_in_order_takes_only_its_members_out(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with node(tmp_path, redis_server, "a") as a:
        alice = joined(a, "alice")
        with node(tmp_path, redis_server, "b") as b:
            bob = joined(b, "bob")
            listed(alice, {"alice", "bob"})
            b.process.terminate()
            assert bob.read_kind("info")[-1].text == "the server is shutting down"
            assert "shutting down" in from_source(alice, "leave", "bob").text
            assert b.process.wait(timeout=15) == 0
        # alice stays, still admin, and bob's name is free.
        alice.send("/whois alice")
        assert alice.read_kind("whois")[-1].fields["admin"] == "yes"
        again = joined(a, "bob")
        again.send("/list")
        assert set(again.read_kind("list")[-1].args) == {"@alice", "bob"}


def test_two_nodes_over_rediss(tmp_path: Path) -> None:
    certs = tmp_path / "redis-certs"
    create_local_ca(certs, datetime.datetime.now(datetime.UTC))
    with running_redis(tmp_path / "redis", certs) as redis:
        assert redis.url.startswith("rediss://localhost:")
        with nodes(tmp_path, redis, 2, "--redis-ca", str(certs / "ca.pem")) as (a, b):
            alice = joined(a, "alice")
            bob = joined(b, "bob")
            listed(alice, {"alice", "bob"})
            bob.send("over TLS")
            said(alice, "bob", "over TLS")


def test_rediss_needs_a_certificate_it_trusts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.daemon.START_TIMEOUT", 6.0)
    certs = tmp_path / "redis-certs"
    create_local_ca(certs, datetime.datetime.now(datetime.UTC))
    other = tmp_path / "other-ca"
    create_local_ca(other, datetime.datetime.now(datetime.UTC))
    untrusted = ("--redis-ca", str(other / "ca.pem"))
    # It never listens: it cannot load the room from a Redis it does not trust.
    with (
        running_redis(tmp_path / "redis", certs) as redis,
        pytest.raises(RuntimeError, match="did not start"),
        running_daemon(tmp_path, "--redis", redis.url, *untrusted),
    ):
        pass
