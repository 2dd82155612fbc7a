"""
One window per identity key: the lock files beside the key and the pins.
"""

from __future__ import annotations

import datetime
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from chatroom.client.app import e2e_paths, parse_args, run
from chatroom.client.locks import FileLock, InUseError, lock_e2e_files
from chatroom.e2e.keys import E2EError
from chatroom.tls import create_local_ca
from tests.daemon import daemon_env


def test_a_second_lock_on_the_identity_key_is_refused_and_says_what_to_do(tmp_path: Path) -> None:
    key, pins = tmp_path / "config" / "identity.pem", tmp_path / "config" / "pins.json"
    held = lock_e2e_files(key, pins)
    assert [lock.lock_path for lock in held] == [
        key.with_name("identity.pem.lock"),
        pins.with_name("pins.json.lock"),
    ]
    assert key.with_name("identity.pem.lock").read_text() == f"{os.getpid()}\n"
    with pytest.raises(E2EError) as refused:
        lock_e2e_files(key, tmp_path / "other-pins.json")
    message = str(refused.value)
    assert (
        f"the identity key {key} is in use by another chatroom-client window (process {os.getpid()})"
        in message
    )
    assert "look like one person" in message and "--identity FILE --pins FILE" in message
    # Nothing is left held by the refused attempt.
    assert isinstance(refused.value.__cause__, InUseError)
    for lock in held:
        lock.release()
    again = lock_e2e_files(key, pins)
    assert all(lock.held for lock in again)
    for lock in again:
        lock.release()
    assert not any(lock.held for lock in again)


def test_a_shared_pin_file_is_refused_too(tmp_path: Path) -> None:
    pins = tmp_path / "pins.json"
    held = lock_e2e_files(tmp_path / "alice.pem", pins)
    with pytest.raises(E2EError, match=rf"the pin file {pins} is in use"):
        lock_e2e_files(tmp_path / "bob.pem", pins)
    # bob's identity lock was let go when his pin lock failed.
    bob = FileLock(tmp_path / "bob.pem")
    bob.acquire()
    assert bob.held and all(lock.held for lock in held)
    for lock in [bob, *held]:
        lock.release()


def test_the_lock_goes_with_the_process(tmp_path: Path) -> None:
    key = tmp_path / "identity.pem"
    # Another process takes the lock and ends without releasing it.
    code = (
        "import sys; from pathlib import Path; from chatroom.client.locks import FileLock;"
        " FileLock(Path(sys.argv[1])).acquire()"
    )
    subprocess.run([sys.executable, "-c", code, str(key)], check=True, env=daemon_env(), timeout=60)
    assert key.with_name("identity.pem.lock").exists()
    lock = FileLock(key)
    lock.acquire()
    assert lock.held
    lock.release()


def test_the_paths_locked_are_the_ones_the_command_line_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = create_local_ca(tmp_path / "certs", datetime.datetime.now(datetime.UTC))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert e2e_paths(parse_args(["--ca", str(ca)])) == (
        tmp_path / "config" / "chatroom" / "identity.pem",
        tmp_path / "config" / "chatroom" / "pins.json",
    )
    mine = ["--identity", str(tmp_path / "a.pem"), "--pins", str(tmp_path / "a.json")]
    assert e2e_paths(parse_args(["--ca", str(ca), *mine])) == (tmp_path / "a.pem", tmp_path / "a.json")


def test_the_client_does_not_start_on_a_key_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = create_local_ca(tmp_path / "certs", datetime.datetime.now(datetime.UTC))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    key = tmp_path / "config" / "chatroom" / "identity.pem"
    held = lock_e2e_files(key, key.with_name("pins.json"))
    # The reactor is never reached: the client stops before the window.
    assert run(object(), ["--ca", str(ca)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"chatroom-client: the identity key {key} is in use by another chatroom-client window"
    )
    assert err.rstrip().endswith("(or run with --no-e2e)")
    assert not key.exists()
    for lock in held:
        lock.release()


def test_the_readme_walkthrough_gives_each_window_its_own_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.rst").read_text(encoding="utf-8")
    windows = [
        shlex.split(line)[1:]
        for line in readme.splitlines()
        if line.strip().startswith(".venv/bin/chatroom-client")
    ]
    assert len(windows) >= 2
    ca = create_local_ca(tmp_path / "certs", datetime.datetime.now(datetime.UTC))
    monkeypatch.chdir(tmp_path)
    paths = [e2e_paths(parse_args([*argv, "--ca", str(ca)])) for argv in windows]
    # All the windows can run at once.
    held = [lock for identity, pins in paths for lock in lock_e2e_files(identity, pins)]
    assert len(held) == 2 * len(windows)
    for lock in held:
        lock.release()
