"""
Real IRC clients from Debian's packages against the real daemon: WeeChat
(weechat-headless, driven through its FIFO, read through its logger) and
irssi (in tmux, driven with send-keys, read from the pane). Each joins the
room beside a line-protocol admin, chats both ways, sees a rename and is
kicked. Every wait polls for its condition with a deadline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from chatroom.wire import parse_line
from tests.daemon import Daemon, LineClient, running_daemon
from tests.processes import stop_process

DEADLINE = 30.0
LISTEN = ("--listen", "line:ssl:0:interface=127.0.0.1", "--listen", "irc:tcp:0:interface=127.0.0.1")


def wait_until(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """
    Poll C{check} until it holds; fail after C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


@contextmanager
def irc_daemon(directory: Path) -> Iterator[tuple[Daemon, LineClient, int]]:
    """
    The daemon with a line and an IRC listener, and its first member (the
    admin), the line client boss.
    """
    with running_daemon(directory, *LISTEN) as daemon:
        boss = daemon.connect().join_as("boss")
        yield daemon, boss, daemon.port_of("irc")


def chat_rename_and_kick(
    boss: LineClient, nick: str, say: Callable[[str], None], seen: Callable[[str], bool]
) -> None:
    """
    The scenario every client goes through once it is in the channel as C{nick}.
    """
    boss.send("hello from the line side")
    wait_until(lambda: seen("hello from the line side"), "the IRC client to see the line member's message")
    say("hello from IRC")
    raw = boss.read_until(lambda raw: parse_line(raw).kind == "message" and parse_line(raw).source == nick)
    assert parse_line(raw[-1]).text == "hello from IRC"
    boss.send("/nick chief")
    boss.read_kind("rename", "chief")
    wait_until(lambda: seen("chief"), "the IRC client to see the rename")
    boss.send(f"/kick {nick} that will do")
    boss.read_kind("leave")
    wait_until(lambda: seen("that will do"), "the IRC client to see its kick")


@pytest.mark.skipif(shutil.which("weechat-headless") is None, reason="needs weechat-headless")
def test_weechat(tmp_path: Path) -> None:
    home = tmp_path / "weechat"
    home.mkdir()
    fifo = home / "fifo"
    logs = home / "logs"
    with irc_daemon(tmp_path) as (_daemon, boss, port):
        commands = ";".join(
            (
                f"/set fifo.file.path {fifo}",
                "/set logger.file.flush_delay 0",
                f"/set logger.file.path {logs}",
                f"/server add cr 127.0.0.1/{port} -notls",
                "/set irc.server.cr.nicks wee",
                "/set irc.server.cr.username wee",
                "/set irc.server.cr.autojoin #chatroom",
                "/set irc.server.cr.autoreconnect off",
                "/connect cr",
            )
        )
        process = subprocess.Popen(
            ["weechat-headless", "--dir", str(home), "--run-command", commands],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            boss.read_kind("rename", "wee")
            channel_log = logs / "irc.cr.#chatroom.weechatlog"
            wait_until(lambda: "has joined #chatroom" in read_text(channel_log), "WeeChat to join #chatroom")
            wait_until(fifo.exists, "WeeChat's FIFO")

            def say(text: str) -> None:
                with fifo.open("w") as pipe:
                    pipe.write(f"irc.cr.#chatroom *{text}\n")

            chat_rename_and_kick(boss, "wee", say, lambda text: text in read_text(channel_log))
            assert "kicked wee" in read_text(channel_log) or "has kicked wee" in read_text(channel_log)
        finally:
            stop_process(process)


@pytest.mark.skipif(
    shutil.which("irssi") is None or shutil.which("tmux") is None, reason="needs irssi and tmux"
)
def test_irssi(tmp_path: Path) -> None:
    home = tmp_path / "irssi"
    home.mkdir()
    # irssi's own settings: no reconnecting after the kick.
    (home / "config").write_text('settings = { core = { server_reconnect_time = "-1"; }; };\n')
    socket = str(tmp_path / "tmux.sock")
    env = dict(os.environ, TERM="xterm", HOME=str(tmp_path))

    def tmux(*args: str) -> str:
        run = subprocess.run(
            ["tmux", "-S", socket, *args], env=env, capture_output=True, text=True, timeout=15
        )
        return run.stdout

    def screen() -> str:
        return tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "irc")

    with irc_daemon(tmp_path) as (_daemon, boss, port):
        command = f"irssi --home={home} --connect=127.0.0.1 --port={port} --nick=irs"
        tmux("new-session", "-d", "-s", "irc", "-x", "200", "-y", "50", command)
        try:
            boss.read_kind("rename", "irs")
            tmux("send-keys", "-t", "irc", "/join #chatroom", "Enter")
            wait_until(lambda: "has joined #chatroom" in screen(), "irssi to join #chatroom")

            def say(text: str) -> None:
                tmux("send-keys", "-t", "irc", "-l", text)
                tmux("send-keys", "-t", "irc", "Enter")

            chat_rename_and_kick(boss, "irs", say, lambda text: text in screen())
            assert "irs was kicked from #chatroom by chief" in screen()
        finally:
            tmux("kill-server")
