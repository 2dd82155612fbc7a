"""
End to end: the real daemon over real TLS on 127.0.0.1.
"""

from __future__ import annotations

import re
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from tests.daemon import Daemon, LineClient, daemon_command, daemon_env


def joined(daemon: Daemon, name: str) -> tuple[LineClient, str]:
    client = daemon.connect()
    welcome = client.read_kind("welcome")[-1]
    return client.join_as(name), welcome.args[0]


def carol_cloak(client: LineClient) -> str:
    client.send("/whois carol")
    return client.read_kind("whois")[-1].fields["cloak"]


def test_three_clients_chat(daemon: Daemon) -> None:
    alice, _ = joined(daemon, "alice")
    bob, _ = joined(daemon, "bob")
    carol, _ = joined(daemon, "carol")

    alice.send("hello all")
    for client in (alice, bob, carol):
        got = client.read_kind("message")[-1]
        assert (got.source, got.text) == ("alice", "hello all")

    bob.send("/whisper carol just for you")
    # Carol gets the whisper; alice never does (checked below with a marker).
    assert carol.read_kind("whisper")[-1].text == "just for you"
    assert bob.read_kind("whisper")[-1].args == ("carol",)

    carol.send("/me waves")
    for client in (alice, bob, carol):
        assert client.read_kind("action")[-1].text == "carol waves"

    alice.send("/filter secret")
    alice.read_kind("filter")
    bob.send("the secret is out")
    bob.send("/say marker")
    seen = alice.read_kind("message")
    while seen[-1].text != "marker":
        seen += alice.read_kind("message")
    texts = [line.text for line in seen if line.kind in ("message", "whisper")]
    assert texts == ["marker"]

    carol.send("/list")
    listed = carol.read_kind("list")[-1]
    # alice came first: the daemon made her admin.
    assert set(listed.args) == {"@alice", "bob", "carol"}

    # By default members see each other's cloaks; admins see the address too.
    carol.send("/whois alice")
    whois = carol.read_kind("whois")[-1]
    assert whois.fields["name"] == "alice"
    assert re.fullmatch(r"cloak-[0-9a-f]{8}\.chatroom", whois.fields["address"])
    assert "127.0.0.1" not in whois.text
    alice.send("/whois carol")
    whois = alice.read_kind("whois")[-1]
    assert whois.fields["address"].startswith("127.0.0.1:")
    # One address, one cloak: carol and alice both connect from 127.0.0.1.
    assert whois.fields["cloak"] == carol_cloak(carol)
    key = daemon.directory / "state" / "cloak.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32

    bob.send("/quit see you")
    for client in (alice, carol):
        left = client.read_kind("leave")[-1]
        assert (left.source, left.text) == ("bob", "bob left (quit: see you)")
    with pytest.raises(ConnectionError):
        bob.read_until(lambda line: False)

    carol.close()
    assert alice.read_kind("leave")[-1].source == "carol"
    alice.close()


def test_explicit_missing_certificate_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        daemon_command("--cert", "nope.pem", "--key", "nope-key.pem"),
        cwd=tmp_path,
        env=daemon_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "cannot read the certificate nope.pem" in result.stdout + result.stderr
    assert not (tmp_path / "certs").exists()


def run_twistd(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        daemon_command(*args), cwd=directory, env=daemon_env(), capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--port", "99999"), "chatroom: --port must be 0 to 65535, not 99999"),
        (("--bogus",), "chatroom: option --bogus not recognized"),
        (
            ("--flood-rate", "fast"),
            "chatroom: Parameter type enforcement failed: --flood-rate takes a number, not 'fast'",
        ),
        (("--listen", "ws:tcp:7000"), "chatroom: --listen ws:tcp:7000: the kind must be one of line, irc"),
    ],
)
def test_a_bad_option_gets_one_error_line_and_a_hint(
    tmp_path: Path, args: tuple[str, ...], error: str
) -> None:
    result = run_twistd(tmp_path, *args)
    assert result.returncode == 1
    # Not the pages of usage text: the error, then where the options are.
    assert (result.stdout + result.stderr).splitlines() == [
        error,
        "twistd -n chatroom --help lists the options.",
    ]


def test_a_missing_certificate_gets_one_error_line(tmp_path: Path) -> None:
    result = run_twistd(tmp_path, "--cert", "nope.pem", "--key", "nope-key.pem")
    assert result.returncode == 1
    assert (result.stdout + result.stderr).splitlines() == [
        "chatroom: cannot read the certificate nope.pem: No such file or directory"
    ]


def test_help_still_lists_every_option(tmp_path: Path) -> None:
    result = run_twistd(tmp_path, "--help")
    assert result.returncode == 0
    for option in ("--port=", "--public-addresses", "--metrics=", "--flood-rate=", "--listen="):
        assert option in result.stdout


def test_bad_clients_do_not_disturb_the_others(daemon: Daemon) -> None:
    alice, _ = joined(daemon, "alice")
    # Garbage instead of a TLS handshake, and a client gone mid-handshake.
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as raw:
        raw.sendall(b"GET / HTTP/1.0\r\n\r\n" * 10)
        raw.settimeout(10)
        assert raw.recv(4096) is not None
    socket.create_connection(("127.0.0.1", daemon.port), timeout=10).close()
    bob, _ = joined(daemon, "bob")
    bob.send(b"\xff\xfe invalid")
    assert bob.read_kind("error")[-1].text.startswith("invalid UTF-8")
    bob.send(b"x" * 5000)
    assert bob.read_kind("error")[-1].text.startswith("line too long")
    bob.sock.sendall(b"half a line")
    bob.close()
    got = alice.read_kind("leave")
    # The clients that never finished a handshake were never announced.
    assert [(line.kind, line.source) for line in got if line.kind != "rename"] == [
        ("join", "guest2"),
        ("leave", "bob"),
    ]
    alice.send("still fine")
    assert alice.read_kind("message")[-1].text == "still fine"
    log = daemon.output.decode()
    assert log.count("bob sent invalid UTF-8") == 1
