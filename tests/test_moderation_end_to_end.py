"""
Moderation through the real daemon over TLS: bans that outlive a restart,
addresses refused at connect, /oper with a password file, bad files at start.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest

from chatroom.passwd import hash_password
from chatroom.state import write_json
from chatroom.stores.files import STATE_FILE
from chatroom.wire import parse_line
from tests.daemon import daemon_command, daemon_env, running_daemon


def test_a_ban_survives_a_restart(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as daemon:
        alice = daemon.connect().join_as("alice")
        bob = daemon.connect().join_as("bob")
        alice.send("/ban bob 7d spamming")
        # bob is on alice's address (127.0.0.1): only his name is banned.
        assert alice.read_kind("ban")[-1].fields["expires"] != "never"
        assert alice.read_kind("info")[-1].text.startswith("note: the address 127.0.0.1 is not banned")
        assert bob.read_kind("banned")[-1].text.endswith(": spamming")
        with pytest.raises(ConnectionError):
            bob.read_until(lambda raw: False)
        alice.send("/ban 198.51.100.0/24")
        alice.read_kind("ban")
        alice.close()
    saved = json.loads((tmp_path / "state" / STATE_FILE).read_text())
    assert [ban["name"] or ban["network"] for ban in saved["bans"]] == ["bob", "198.51.100.0/24"]

    with running_daemon(tmp_path) as daemon:
        admin = daemon.connect().join_as("admin")
        admin.send("/bans")
        summary, *bans = admin.read_kind("banlist")
        while len(bans) < 2:
            bans += admin.read_kind("banlist")
        assert summary.fields == {"count": "2"}
        assert [(ban.args[0], ban.fields["by"], ban.text) for ban in bans] == [
            ("bob", "alice", "spamming"),
            ("198.51.100.0/24", "alice", ""),
        ]
        other = daemon.connect()
        other.read_kind("list")
        other.send("/nick bob")
        assert other.read_kind("error")[-1].text.startswith("the name bob is banned until ")
        admin.close()
        other.close()


def test_a_banned_address_is_refused_at_connect(tmp_path: Path) -> None:
    ban = {"name": None, "network": "127.0.0.0/8", "by": "alice", "at": 1.0, "expires": None, "reason": "go"}
    (tmp_path / "state").mkdir()
    write_json(tmp_path / "state" / STATE_FILE, {"version": 1, "bans": [ban]})
    with running_daemon(tmp_path) as daemon:
        client = daemon.connect()
        line = parse_line(client.read_line())
        assert (line.kind, line.args[0], line.fields["expires"]) == ("banned", "127.0.0.0/8", "never")
        assert line.text == "you are banned from this room permanently: go"
        with pytest.raises(ConnectionError):
            client.read_line()


def test_oper_with_a_password_file(tmp_path: Path) -> None:
    (tmp_path / "admin.hash").write_text(f"{hash_password('let me in')}\n")
    with running_daemon(tmp_path, "--admin-password-file", "admin.hash") as daemon:
        alice = daemon.connect().join_as("alice")
        bob = daemon.connect().join_as("bob")
        alice.send("/list")
        assert alice.read_kind("list")[-1].args == ("alice", "bob")
        alice.send("/oper let me out")
        assert alice.read_kind("error")[-1].text == "wrong password"
        bob.send("/oper let me in")
        for client in (alice, bob):
            line = client.read_kind("admin")[-1]
            assert line.args == ("bob", "admin=yes")
        bob.send("/kick alice bye")
        assert alice.read_kind("kick")[-1].text == "bob kicked alice: bye"
        bob.close()
    output = daemon.output.decode()
    assert "refused /oper by alice (#1 at 127.0.0.1:" in output and "): wrong password" in output
    # The daemon's log ties the kick to both connections.
    assert re.search(r"bob \(#2 at 127\.0\.0\.1:\d+\) kicked alice \(#1 at 127\.0\.0\.1:\d+\): bye", output)


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({"state/moderation.json": '{"version": 1, "bans": ['}, (), b"moderation.json is corrupt"),
        (
            {"admin.hash": "plain text\n"},
            ("--admin-password-file", "admin.hash"),
            b"not a chatroom password hash",
        ),
        ({}, ("--admin-password-file", "missing.hash"), b"cannot read the admin password file"),
    ],
)
def test_bad_files_stop_the_daemon_at_start(
    tmp_path: Path, files: dict[str, str], args: tuple[str, ...], message: bytes
) -> None:
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(content)
    done = subprocess.run(
        daemon_command(*args), cwd=tmp_path, env=daemon_env(), capture_output=True, timeout=60
    )
    assert done.returncode != 0
    assert message in done.stdout + done.stderr


def test_sighup_reloads_the_admin_password_file(tmp_path: Path) -> None:
    hash_file = tmp_path / "admin.hash"
    hash_file.write_text(f"{hash_password('old secret')}\n")
    args = ("--admin-password-file", "admin.hash", "--flood-rate", "0")
    with running_daemon(tmp_path, *args) as daemon:
        alice = daemon.connect().join_as("alice")
        hash_file.write_text("not a hash")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_log("reload refused, keeping the old admin password", alice)
        hash_file.write_text(f"{hash_password('new secret')}\n")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_log("reloaded the admin password file", alice)
        alice.send("/oper old secret")
        assert alice.read_kind("error")[-1].text == "wrong password"
        bob = daemon.connect().join_as("bob")
        bob.send("/oper new secret")
        assert bob.read_kind("admin")[-1].args == ("bob", "admin=yes")
