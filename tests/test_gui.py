"""
The Tk client on a real X server (Xvfb) against the real daemon over TLS.

The in-process tests drive real widgets: real key presses from xdotool go
to the input line once it has the X focus, and the assertions read what the
message area and the member list show. The reactor is turned by hand
(L{tests.pump}); the last test runs C{chatroom-client} as its own process.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
import tkinter as tk
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tkinter import font, ttk
from typing import Any

import pytest
from twisted.application.internet import backoffPolicy
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from chatroom.client.app import ClientApp
from chatroom.client.gui import DEFAULT_SIZE, ELLIPSIS, MIN_SIZE, UI_FAMILIES, ChatWindow
from chatroom.client.protocol import ChatClientProtocol, Lock
from chatroom.client.render import HISTORY_RULE, local_time
from chatroom.client.session import ChatSession, E2ESettings
from chatroom.e2e.client import E2EClient
from chatroom.e2e.envelope import EnvelopeKind, seal
from chatroom.e2e.group import GroupLine, GroupPlain, OutboundGroup, member_set_hash
from chatroom.e2e.keys import Identity, Session
from chatroom.e2e.pins import PinStore
from chatroom.wire import Kind, ServerLine, format_line, parse_line
from tests.daemon import REPO, Daemon, LineClient, daemon_env, running_daemon
from tests.pump import global_reactor, local_endpoint, pump
from tests.xvfb import xvfb

ARTIFACTS = REPO / "artifacts"
TOOL_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb() as name:
        old = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = name
        try:
            yield name
        finally:
            if old is None:
                del os.environ["DISPLAY"]
            else:
                os.environ["DISPLAY"] = old


def xdotool(*args: str) -> str:
    done = subprocess.run(
        ["xdotool", *args], capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=True
    )
    return done.stdout


class Gui:
    """
    One client window in this process, as the application builds it.
    """

    def __init__(
        self,
        port: int,
        ca_path: Path,
        nick: str | None,
        everyone: list[Gui],
        retry_policy: Callable[[int], float] | None = None,
        e2e: E2ESettings | None = None,
    ) -> None:
        self.reactor = global_reactor()
        self.root = tk.Tk(className="chatroom")
        self.everyone = everyone
        everyone.append(self)
        address = f"127.0.0.1:{port}"
        endpoint = local_endpoint(self.reactor, port, ca_path)
        self.session = ChatSession(self.reactor, endpoint, address, nick, retry_policy, e2e)
        self.app = ClientApp(self.reactor, self.session)
        self.window = ChatWindow(self.root, self.app, address)
        self.session.start(self.window)

    def pump(self, done: Any, what: str) -> None:
        pump(self.reactor, done, [gui.root for gui in self.everyone], what=what)

    def shows(self, text: str) -> bool:
        return any(text in line for line in self.window.message_lines())

    def wait_for_text(self, text: str) -> str:
        self.pump(lambda: self.shows(text), f"{text!r} in the message area")
        return next(line for line in self.window.message_lines() if text in line)

    def members(self) -> list[str]:
        return list(self.window.members.get(0, tk.END))

    def style_of(self, text: str) -> set[str]:
        """
        The message-area tags on the first line that shows C{text}.
        """
        found = self.window.messages.search(text, "1.0", tk.END)
        assert found, text
        return set(self.window.messages.tag_names(found))

    def focus(self) -> None:
        """
        Give the input line the X focus (there is no window manager to click).
        """
        entry = self.window.entry
        self.pump(entry.winfo_viewable, "the input line to be viewable")
        entry.focus_force()
        self.pump(lambda: self.root.focus_get() is entry, "the input line to get the X focus")

    def type_line(self, text: str) -> None:
        """
        Focus the input line, type C{text} with real key presses, press Return.
        """
        entry = self.window.entry
        self.focus()
        xdotool("type", "--delay", "5", text)
        self.pump(lambda: entry.get() == text, f"{text!r} in the input line")
        xdotool("key", "Return")
        self.pump(lambda: entry.get() == "", "the input line to be sent")

    def close(self) -> None:
        closed = self.session.stop()
        self.pump(lambda: closed.called, "the connection to close")
        self.everyone.remove(self)
        self.root.destroy()


@pytest.fixture
def guis(display: str) -> Iterator[list[Gui]]:
    everyone: list[Gui] = []
    yield everyone
    for gui in list(everyone):
        gui.close()


def until_kind(client: LineClient, kind: str, *args: str) -> ServerLine:
    def match(raw: bytes) -> bool:
        parsed = parse_line(raw)
        return parsed.kind == kind and parsed.args[: len(args)] == args

    return parse_line(client.read_until(match)[-1])


def joined(daemon: Daemon, name: str) -> LineClient:
    client = daemon.connect()
    until_kind(client, "list")
    client.send(f"/nick {name}")
    until_kind(client, "rename", name)
    return client


def test_two_windows_and_a_line_client_chat(daemon: Daemon, guis: list[Gui]) -> None:
    carol = joined(daemon, "carol")
    alice = Gui(daemon.port, daemon.ca_path, "alice", guis)
    bob = Gui(daemon.port, daemon.ca_path, "bob", guis)
    # Carol came first, so she is the admin.
    alice.pump(lambda: alice.members() == ["@carol", "alice", "bob"], "the member list")
    assert alice.window.members_label.cget("text") == "Members (3)"
    assert alice.root.title() == f"chatroom - alice @ 127.0.0.1:{daemon.port} (connected)"
    assert "TLS verified" in alice.window.status.cget("text")
    assert str(alice.window.reconnect_button.cget("state")) == "disabled"

    alice.type_line("hello from alice")
    # Pump first: the blocking line client would hold up the reactor.
    shown = bob.wait_for_text("<alice> hello from alice")
    # Bob's window has no focus: the title counts what he has not read.
    assert bob.root.title() == f"(1) chatroom - bob @ 127.0.0.1:{daemon.port} (connected)"
    assert alice.root.title() == f"chatroom - alice @ 127.0.0.1:{daemon.port} (connected)"
    heard = until_kind(carol, "message")
    assert (heard.source, heard.text) == ("alice", "hello from alice")
    # The time shown is the server's timestamp in local time.
    assert shown == f"{local_time(heard.timestamp)} <alice> hello from alice"
    assert "own" in alice.style_of("<alice> hello from alice")
    assert "message" in bob.style_of("<alice> hello from alice")

    # Up brings back the line sent; Down goes back to the (empty) draft.
    xdotool("key", "Up")
    alice.pump(lambda: alice.window.entry.get() == "hello from alice", "the history")
    xdotool("key", "Down")
    alice.pump(lambda: alice.window.entry.get() == "", "the draft")

    # Bob comes back to his window: the count goes.
    bob.focus()
    bob.pump(lambda: bob.root.title().startswith("chatroom - bob @"), "the unread count to go")
    assert bob.window.unread == 0

    # Tab completes a member's name; again, the next one that fits.
    alice.focus()
    xdotool("type", "--delay", "5", "/whisper b")
    alice.pump(lambda: alice.window.entry.get() == "/whisper b", "the typing")
    xdotool("key", "Tab")
    alice.pump(lambda: alice.window.entry.get() == "/whisper bob ", "the completion")
    assert alice.root.focus_get() is alice.window.entry
    xdotool("type", "--delay", "5", "tab done")
    alice.pump(lambda: alice.window.entry.get() == "/whisper bob tab done", "the rest of the line")
    xdotool("key", "Return")
    bob.wait_for_text("(whisper from alice) tab done")
    xdotool("type", "--delay", "5", "C")
    xdotool("key", "Tab")
    alice.pump(lambda: alice.window.entry.get() == "carol: ", "the name of the line client")
    alice.window.entry.delete(0, tk.END)

    bob.type_line("/whisper alice psst")
    alice.wait_for_text("(whisper from bob) psst")
    assert "whisper" in alice.style_of("(whisper from bob) psst")
    carol.send("/me waves")
    alice.wait_for_text("* carol waves")
    assert "action" in alice.style_of("* carol waves")
    bob.type_line("/bogus")
    bob.wait_for_text("! unknown command")
    assert "error" in bob.style_of("! unknown command")

    carol.send("/nick caroline")
    alice.pump(lambda: alice.members() == ["@caroline", "alice", "bob"], "the rename in the list")
    carol.close()
    # Alice has been connected longest: she takes over as admin.
    bob.pump(lambda: bob.members() == ["@alice", "bob"], "carol's leaving in the list")

    # Escape quits: alice says goodbye to the room and the connection closes.
    alice.window.entry.focus_force()
    alice.pump(lambda: alice.root.focus_get() is alice.window.entry, "the focus")
    xdotool("key", "Escape")
    bob.wait_for_text("alice left (quit)")
    alice.pump(lambda: alice.session.idle, "alice's connection to close")
    bob.pump(lambda: bob.members() == ["@bob"], "alice's leaving in the list")


def keys(directory: Path, name: str) -> E2ESettings:
    """
    E2E settings kept in files under C{directory}, as the application keeps them.
    """
    directory.mkdir(exist_ok=True)
    return E2ESettings(
        Identity.load_or_create(directory / f"{name}.pem"), PinStore(directory / f"{name}.pins")
    )


def locked(*windows: Gui) -> bool:
    return all(gui.window.lock is Lock.LOCKED for gui in windows)


def record_sent(gui: Gui) -> list[bytes]:
    """
    From now on, keep every line C{gui}'s connection sends to the server.
    """
    protocol = gui.session.protocol
    assert protocol is not None
    sent: list[bytes] = []
    send = protocol.sendLine

    def recording(line: bytes) -> None:
        sent.append(line)
        send(line)

    protocol.sendLine = recording  # type: ignore[method-assign]
    return sent


def test_two_windows_chat_end_to_end_and_a_third_sees_a_key_change(
    daemon: Daemon, guis: list[Gui], tmp_path: Path
) -> None:
    secret = f"attack at dawn {os.urandom(6).hex()}"
    alice = Gui(daemon.port, daemon.ca_path, "alice", guis, e2e=keys(tmp_path / "keys", "alice"))
    bob = Gui(daemon.port, daemon.ca_path, "bob", guis, e2e=keys(tmp_path / "keys", "bob"))
    alice.pump(lambda: locked(alice, bob) and bob.members() == ["@alice", "bob"], "both windows locked")
    for gui in (alice, bob):
        assert gui.window.lock_label.cget("text") == "Locked: end-to-end encrypted"
        assert gui.window.lock_label.winfo_viewable()
        assert gui.root.title().endswith("(connected, E2E locked)")
    # Each is announced to the other with its fingerprint, unverified.
    alice_key = alice.session.e2e.identity.fingerprint  # type: ignore[union-attr]
    bob.wait_for_text(f"** alice has key {alice_key} (unverified")
    alice_sent = record_sent(alice)

    alice.type_line(secret)
    # The name shown is the one alice's key signed; bob has not verified it.
    bob.wait_for_text(f"[E2E, unverified] <alice> {secret}")
    alice.wait_for_text(f"[E2E] <alice> {secret}")
    assert "own" in alice.style_of(secret)

    # The safety number is the same on both sides.
    bob.type_line("/verify alice")
    alice.type_line("/verify bob")
    number = bob.wait_for_text("safety number with alice: ").split(": ")[1].split(" (")[0]
    alice.wait_for_text(f"safety number with bob: {number} ")
    bob.type_line("/verify alice ok")
    alice.type_line("/me smiles")
    bob.wait_for_text("[E2E] * alice smiles")

    carol = Gui(daemon.port, daemon.ca_path, "carol", guis, e2e=keys(tmp_path / "keys", "carol"))
    carol.pump(lambda: locked(alice, bob, carol) and len(carol.members()) == 3, "three windows locked")
    carol_sent = record_sent(carol)
    # Bob restarts with a new identity key: carol is warned, loudly.
    bob.close()
    carol.pump(lambda: len(carol.members()) == 2, "bob leaving")
    bob = Gui(daemon.port, daemon.ca_path, "bob", guis, e2e=keys(tmp_path / "new-keys", "bob"))
    warning = carol.wait_for_text("WARNING: the key of bob CHANGED")
    assert "alarm" in carol.style_of("WARNING: the key of bob CHANGED")
    assert bob.session.e2e.identity.fingerprint in warning  # type: ignore[union-attr]
    alice.wait_for_text("WARNING: the key of bob CHANGED")
    # Nothing goes to the new key until carol trusts it.
    carol.type_line("are you still there bob")
    carol.wait_for_text("not sent: the key of bob changed")
    carol.type_line("/trust bob")
    carol.wait_for_text("new key")
    alice.type_line("/trust bob")
    alice.wait_for_text("new key")
    carol.type_line("welcome back bob")
    bob.wait_for_text("[E2E, unverified] <carol> welcome back bob")
    carol.wait_for_text("[E2E] <carol> welcome back bob")
    assert not bob.shows("are you still there")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "chatroom-client-e2e.png"
    # Bob's new window is on top (there is no window manager): raise carol's and let it redraw.
    carol.root.lift()
    carol.root.update()
    subprocess.run(["import", "-window", carol.root.wm_frame(), str(shot)], check=True, timeout=TOOL_TIMEOUT)
    assert shot.stat().st_size > 0

    for gui in (alice, bob, carol):
        gui.close()
    daemon.stop()
    log = bytes(daemon.output)
    assert b"alice" in log  # the daemon's real log, with the joins in it
    # What the server received: group messages, the key shares of the two
    # group sessions (alice's, carol's), and never /verify or /trust.
    sent = b"\n".join(alice_sent + carol_sent)
    assert sum(line.startswith(b"/e2e group ") for line in alice_sent + carol_sent) == 3
    assert sum(line.startswith(b"/e2e send ") for line in alice_sent + carol_sent) == 2
    assert b"/verify" not in sent and b"/trust" not in sent
    for plaintext in (secret, "welcome back bob", "smiles", "are you still there"):
        assert plaintext.encode() not in log
        assert plaintext.encode() not in sent


def test_taken_nick_gets_the_next_variant(daemon: Daemon, guis: list[Gui]) -> None:
    dora = joined(daemon, "dora")
    gui = Gui(daemon.port, daemon.ca_path, "Dora", guis)
    gui.wait_for_text("the name Dora is taken: you are Dora2")
    assert "client" in gui.style_of("** the name Dora is taken")
    assert "Dora2 @" in gui.root.title()
    assert until_kind(dora, "rename").args == ("Dora2",)
    dora.close()


def test_dropped_connection_is_shown_and_comes_back(tmp_path: Path, guis: list[Gui]) -> None:
    # Stopping the daemon blocks this thread, so the in-process client cannot
    # answer the TLS close: a short grace keeps the daemon from waiting long.
    grace = ("--shutdown-grace", "0.2")
    with running_daemon(tmp_path, *grace) as daemon:
        # Quick retries, so the test does not wait out the real backoff.
        quick = backoffPolicy(initialDelay=0.2, maxDelay=0.5, jitter=lambda: 0.0)
        gui = Gui(daemon.port, daemon.ca_path, "erin", guis, quick)
        gui.pump(lambda: gui.members() == ["@erin"], "the member list")
        port = daemon.port
    dropped = gui.wait_for_text("** disconnected: ")
    assert " - reconnecting in 0 s (or press Reconnect)" in dropped
    assert gui.members() == []
    assert str(gui.window.reconnect_button.cget("state")) == "normal"
    assert gui.root.title().endswith("(disconnected)")
    # Offline, a typed line stays in the input line.
    gui.window.entry.insert(0, "not lost")
    gui.window.send()
    assert gui.window.entry.get() == "not lost"
    gui.wait_for_text("not connected: the line was not sent")

    # The daemon comes back on the same port: the client reconnects by
    # itself, under the same name.
    with running_daemon(tmp_path, *grace, "--port", str(port)) as daemon:
        assert daemon.port == port
        gui.pump(lambda: gui.members() == ["@erin"], "the reconnect")
        assert gui.root.title().endswith("(connected)")


def test_refused_connection_offers_reconnect(guis: list[Gui], daemon: Daemon) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gui = Gui(port, daemon.ca_path, None, guis)
    gui.wait_for_text("disconnected: connection refused: is the daemon running?")
    button = gui.window.reconnect_button
    gui.pump(lambda: str(button.cget("state")) == "normal" and button.winfo_viewable(), "Reconnect")
    button.invoke()
    assert gui.window.state == "connecting"
    assert gui.window.status.cget("text") == f"Connecting to 127.0.0.1:{port}..."
    gui.pump(lambda: gui.window.state == "disconnected", "the second refusal")
    # One notice per attempt, each with why and when the next one is; the
    # status bar has the latest.
    refusals = [line.split(" ", 1)[1] for line in gui.window.message_lines() if "refused" in line]
    assert len(refusals) == 2, refusals
    first, second = refusals
    assert first.startswith("** disconnected: connection refused: is the daemon running? - reconnecting in ")
    assert first.endswith(" s (or press Reconnect)")
    assert second.startswith("** reconnect attempt 1 failed: connection refused: is the daemon running?")
    assert " - reconnecting in " in second
    assert not any(line.split(" ", 1)[1].startswith("** reconnecting") for line in gui.window.message_lines())
    assert "refused" in gui.window.status_text
    assert "reconnecting in" in gui.window.status_text


def test_window_stays_responsive_while_the_server_is_silent(
    guis: list[Gui], daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that accepts TCP and then never answers the TLS handshake.
    monkeypatch.setattr("chatroom.client.protocol.HANDSHAKE_TIMEOUT", 1.0)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        gui = Gui(silent.getsockname()[1], daemon.ca_path, None, guis)
        gui.pump(lambda: gui.window.state == "connecting", "the connection attempt")
        # Meanwhile the window takes typing as usual.
        entry = gui.window.entry
        gui.pump(entry.winfo_viewable, "the input line")
        entry.focus_force()
        gui.pump(lambda: gui.root.focus_get() is entry, "the focus")
        xdotool("type", "--delay", "5", "still typing")
        gui.pump(lambda: entry.get() == "still typing", "the typing")
        assert gui.window.state == "connecting"
        gui.wait_for_text("disconnected: the connection attempt timed out")
        assert str(gui.window.reconnect_button.cget("state")) == "normal"


class RecordingController:
    """
    Stands in for the session, to test the window on its own.
    """

    def __init__(self, online: bool) -> None:
        self.online = online
        self.sent: list[str] = []
        self.quits = 0
        self.reconnects = 0

    def send(self, text: str) -> bool:
        if self.online:
            self.sent.append(text)
        return self.online

    def reconnect(self) -> None:
        self.reconnects += 1

    def quit(self) -> None:
        self.quits += 1


def test_window_buttons_and_bounded_message_area(display: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("chatroom.client.gui.MAX_LINES", 50)
    root = tk.Tk()
    controller = RecordingController(online=False)
    window = ChatWindow(root, controller, "localhost:6697")
    try:
        root.update()
        assert window.send_button.winfo_viewable() and window.messages.winfo_viewable()
        assert str(window.messages.cget("state")) == "disabled"
        window.entry.insert(0, "kept")
        window.send_button.invoke()
        assert window.entry.get() == "kept"
        assert window.message_lines()[-1].endswith(
            "** not connected: the line was not sent (it is still in the input line)"
        )
        controller.online = True
        window.send_button.invoke()
        assert (controller.sent, window.entry.get()) == (["kept"], "")

        for n in range(60):
            window.notice(f"note {n}")
        lines = window.message_lines()
        assert len(lines) == 50
        assert lines[0].endswith("** note 10") and lines[-1].endswith("** note 59")
        window.clear_button.invoke()
        assert window.message_lines() == []

        window.disconnected("the connection was lost")
        window.reconnect_button.invoke()
        assert controller.reconnects == 1
        window.quit_button.invoke()
        assert controller.quits == 1
        # What a window manager's close button runs:
        root.tk.call(root.protocol("WM_DELETE_WINDOW"))
        assert controller.quits == 2
    finally:
        root.destroy()
    # Destroying the window quits too: the client must not run on without it.
    assert controller.quits == 3
    # Network news arriving meanwhile has nowhere to go, and no error either.
    window.disconnected("the connection was lost")
    window.notice("late")


# Closing the window from outside is tested in process (the WM_DELETE_WINDOW
# handler): Xvfb runs no window manager, and neither destroying the window
# from outside nor sending it the manager's message was reliable here.
@pytest.mark.parametrize("e2e", [True, False])
def test_chatroom_client_process(daemon: Daemon, display: str, e2e: bool) -> None:
    """
    C{chatroom-client} with its defaults (or C{--no-e2e}), run from the
    daemon's directory: type with xdotool, other clients hear it, a second
    window on the same identity key is refused, save a screenshot, quit
    with Escape.
    """
    carol = joined(daemon, "carol")
    bob = joined(daemon, "bob")
    script = Path(sys.executable).with_name("chatroom-client")
    # The identity key goes under the user's config directory: a fresh one here.
    config = daemon.directory / "config"
    argv = [str(script), "--port", str(daemon.port), "--nick", "alice", *([] if e2e else ["--no-e2e"])]
    env = {**daemon_env(), "XDG_CONFIG_HOME": str(config)}
    client = subprocess.Popen(
        argv, cwd=daemon.directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert until_kind(bob, "rename", "alice").source.startswith("guest")
        window = xdotool("search", "--sync", "--onlyvisible", "--name", "^chatroom - alice").split()[0]
        if e2e:
            # A second window under the same key does not start, and says why.
            second = subprocess.run(
                argv, cwd=daemon.directory, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT
            )
            assert second.returncode == 2
            key = config / "chatroom" / "identity.pem"
            assert f"the identity key {key} is in use by another chatroom-client window" in second.stderr
            assert "--identity FILE --pins FILE" in second.stderr
        xdotool("windowfocus", "--sync", window)
        xdotool("type", "--delay", "10", "hello from the window")
        xdotool("key", "Return")
        # Bob has no E2E keys, so the room is unlocked and chat goes plain.
        heard = until_kind(bob, "message")
        assert (heard.source, heard.text) == ("alice", "hello from the window")
        if e2e:
            assert stat.S_IMODE((config / "chatroom" / "identity.pem").stat().st_mode) == 0o600
        else:
            assert not config.exists()
        bob.send("/me waves back")
        carol.send("hi alice, typing from openssl s_client")
        bob.send("/whisper alice lunch at noon?")
        until_kind(bob, "whisper")
        xdotool("type", "--delay", "10", "/bogus")
        xdotool("key", "Return")
        # The last line typed renames alice: the title says when the window has it.
        xdotool("type", "--delay", "10", "/nick alicia")
        xdotool("key", "Return")
        until_kind(bob, "rename", "alicia")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / ("chatroom-client.png" if e2e else "chatroom-client-no-e2e.png")
        state = r"\(connected, E2E unlocked\)" if e2e else r"\(connected\)"
        xdotool("search", "--sync", "--onlyvisible", "--name", rf"^chatroom - alicia .*{state}$")
        subprocess.run(["import", "-window", window, str(shot)], check=True, timeout=TOOL_TIMEOUT)
        assert shot.stat().st_size > 0
        # The room is told, the process ends on its own.
        xdotool("key", "Escape")
        left = until_kind(bob, "leave")
        assert (left.source, left.text) == ("alicia", "alicia left (quit)")
        assert client.wait(timeout=TOOL_TIMEOUT) == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(timeout=TOOL_TIMEOUT)
        assert client.stdout is not None
        output = client.stdout.read().decode(errors="replace")
    assert "Traceback" not in output, output


@pytest.fixture
def window(display: str) -> Iterator[ChatWindow]:
    """
    A window on its own, with a recording controller, laid out at its default size.
    """
    root = tk.Tk(className="chatroom")
    window = ChatWindow(root, RecordingController(online=True), "localhost:6697")
    root.update()
    try:
        yield window
    finally:
        root.destroy()


def inside_the_window(widget: tk.Misc) -> bool:
    root = widget.winfo_toplevel()
    left, right = widget.winfo_rootx(), widget.winfo_rootx() + widget.winfo_width()
    return (
        widget.winfo_viewable()
        and root.winfo_rootx() <= left
        and right <= root.winfo_rootx() + root.winfo_width()
    )


def resize(window: ChatWindow, width: int, height: int) -> None:
    root = window.root
    root.geometry(f"{width}x{height}")
    deadline = time.monotonic() + TOOL_TIMEOUT
    while (root.winfo_width(), root.winfo_height()) != (width, height):
        assert time.monotonic() < deadline, "the window was not resized"
        root.update()
    root.update()


def screenshot(window: ChatWindow, name: str) -> Path:
    """
    Save the window as it is now to C{artifacts/NAME}.
    """
    window.root.update()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / name
    subprocess.run(["import", "-window", window.root.wm_frame(), str(shot)], check=True, timeout=TOOL_TIMEOUT)
    assert shot.stat().st_size > 0
    return shot


def test_the_window_is_themed(window: ChatWindow) -> None:
    assert ttk.Style(window.root).theme_use() == "clam"
    family = font.nametofont("TkDefaultFont", root=window.root).actual("family")
    assert family in UI_FAMILIES, family
    assert (window.root.winfo_width(), window.root.winfo_height()) == DEFAULT_SIZE
    assert str(window.send_button.cget("style")) == "Accent.TButton"
    # The lock changing does not move the layout around.
    places = set()
    for lock in Lock:
        window.lock_changed(lock)
        window.root.update()
        label = window.lock_label
        places.add((label.winfo_x(), label.winfo_width(), window.reconnect_button.winfo_x()))
    assert len(places) == 1, places


@pytest.mark.parametrize("width", [DEFAULT_SIZE[0], MIN_SIZE[0]])
def test_a_long_disconnect_reason_is_cut_short_and_reconnect_stays_in_view(
    window: ChatWindow, width: int
) -> None:
    resize(window, width, DEFAULT_SIZE[1])
    window.lock_changed(Lock.LOCKED)
    reason = "the server's certificate could not be verified: is --ca the CA file the daemon created? " * 3
    window.disconnected(reason.strip())
    window.retrying(42.0)
    window.root.update()
    assert window.status_text == f"Disconnected: {reason.strip()} - reconnecting in 42 s"
    shown = str(window.status.cget("text"))
    assert shown.endswith(ELLIPSIS) and window.status_text.startswith(shown[:-1])
    measure = font.nametofont("TkDefaultFont", root=window.root).measure
    assert measure(shown) <= window.status.winfo_width()
    # The lock and the button are whole and inside the window.
    assert inside_the_window(window.reconnect_button) and inside_the_window(window.lock_label)
    assert window.lock_label.winfo_width() >= window.lock_label.winfo_reqwidth()
    assert window.reconnect_button.winfo_width() >= window.reconnect_button.winfo_reqwidth()
    assert str(window.lock_label.cget("text")) == "Locked: end-to-end encrypted"
    screenshot(window, f"chatroom-client-long-reason-{width}.png")
    # All of the reason is in the message area.
    assert window.message_lines()[-1].endswith(
        f"** disconnected: {reason.strip()} - reconnecting in 42 s (or press Reconnect)"
    )
    # At the default size a short status is shown whole.
    window.connecting("localhost:6697")
    resize(window, *DEFAULT_SIZE)
    assert window.status.cget("text") == "Connecting to localhost:6697..."


def at_bottom(window: ChatWindow) -> bool:
    window.root.update()
    return window.messages.yview()[1] >= 1.0


def test_the_view_stays_at_the_newest_line_and_marks_new_ones_when_scrolled_up(window: ChatWindow) -> None:
    for n in range(200):
        window.notice(f"line {n}")
    assert at_bottom(window)
    for width, height in [(700, 360), (1000, 700), (MIN_SIZE[0], MIN_SIZE[1])]:
        resize(window, width, height)
        assert at_bottom(window), (width, height)
    resize(window, *DEFAULT_SIZE)
    assert at_bottom(window) and not window.new_marker.winfo_ismapped()

    # The user scrolls up (the wheel, over the message area): new lines do not pull the view down.
    window.root.update()
    messages = window.messages
    for _ in range(5):
        messages.event_generate("<Button-4>", x=50, y=50)
        messages.event_generate("<ButtonRelease-4>", x=50, y=50)
    window.root.update()
    # The first line in view (fractions change as lines come).
    top = messages.index("@0,0")
    assert messages.yview()[1] < 1.0
    window.notice("news")
    window.notice("more news")
    window.root.update()
    assert messages.index("@0,0") == top
    assert window.new_marker.winfo_ismapped()
    assert window.new_marker.cget("text") == "\N{DOWNWARDS ARROW} 2 new messages"
    screenshot(window, "chatroom-client-new-messages.png")
    # A resize keeps the reader where they were.
    resize(window, 900, 600)
    assert messages.index("@0,0") == top
    assert messages.yview()[1] < 1.0 and window.new_marker.winfo_ismapped()

    # The marker takes the reader down, and goes.
    window.new_marker.invoke()
    assert at_bottom(window)
    assert not window.new_marker.winfo_ismapped() and window.unseen == 0
    window.notice("latest")
    assert at_bottom(window) and window.message_lines()[-1].endswith("** latest")

    # Scrolling down to the end by hand does the same.
    messages.yview_moveto(0.0)
    window.root.update()
    window.notice("one more")
    window.root.update()
    assert window.new_marker.winfo_ismapped()
    messages.yview_moveto(1.0)
    window.root.update()
    assert not window.new_marker.winfo_ismapped()


def server_line(moment: datetime, kind: str, source: str, text: str) -> ServerLine:
    return parse_line(format_line(moment.timestamp(), kind, source, text))


def test_a_line_not_from_today_shows_its_date(window: ChatWindow) -> None:
    now = datetime.now(UTC)
    window.line_received(server_line(now - timedelta(days=3), "message", "bob", "old news"))
    window.line_received(server_line(now, "message", "bob", "fresh news"))
    old, fresh = window.message_lines()
    assert old == f"{(now - timedelta(days=3)).astimezone():%Y-%m-%d %H:%M:%S} <bob> old news"
    assert fresh == f"{local_time(now)} <bob> fresh news"
    assert "dated" in window.messages.tag_names("1.25") and "dated" not in window.messages.tag_names("2.15")


def test_window_shows_unlock_lines_the_consent_step_and_recipient_warnings(display: str) -> None:
    """
    A hostile server (lines written by the test) against a real window:
    every lock change, the /plain consent, a hidden reader and forged plain
    chat are all lines the user sees.
    """
    clock = Clock()
    clock.advance(time.time())
    root = tk.Tk()
    window = ChatWindow(root, RecordingController(online=True), "localhost:6697")
    e2e = E2EClient(Identity.generate(), PinStore(), clock=clock.seconds)
    protocol = ChatClientProtocol(window, clock, None, lambda p: None, lambda p, reason: None, e2e)
    protocol.makeConnection(StringTransport())
    bob, ghost = Session(Identity.generate()), Session(Identity.generate())

    def server(kind: Kind, source: str = "*", text: str = "", args: tuple[str, ...] = ()) -> None:
        protocol.dataReceived(format_line(clock.seconds(), kind, source, text, args) + b"\r\n")
        root.update()

    def style_of(text: str) -> set[str]:
        found = window.messages.search(text, "1.0", tk.END)
        assert found, (text, window.message_lines())
        return set(window.messages.tag_names(found))

    try:
        server(Kind.WELCOME, "*", "Welcome, you are alice", ("alice",))
        server(Kind.LIST, "*", "users 1-2 of 2", ("alice", "bob"))
        server(Kind.CHALLENGE, "*", "sign", ("room=chatroom", "nonce=AAAA"))
        server(Kind.KEY, "alice", "key", (e2e.session.bundle.encode(),))
        server(Kind.KEY, "bob", "key", (bob.bundle.encode(),))
        assert window.lock is Lock.LOCKED
        # A stray list chunk adds no one: not to the window's members, not
        # to the recipients (one member model for both).
        server(Kind.LIST, "*", "users 2-2 of 3", ("guest4711",))
        server(Kind.KEY, "guest4711", "key", (ghost.bundle.encode(),))
        root.update()
        assert list(window.members.get(0, tk.END)) == ["alice", "bob"]
        assert sorted(window.roster.names()) == sorted(e2e.roster.names()) == ["alice", "bob"]
        server(Kind.KEYDROP, "bob", "bob has no end-to-end key now")
        assert window.lock is Lock.UNLOCKED
        assert "warning" in style_of("!! UNLOCKED: not end-to-end encrypted, as bob has no keys")
        protocol.send_typed("the launch code")
        root.update()
        assert "client" in style_of("** not sent: it cannot be end-to-end encrypted, as bob has no keys")
        protocol.send_typed("/plain")
        root.update()
        style_of("** chat now goes IN THE CLEAR")
        server(Kind.KEY, "bob", "key", (bob.bundle.encode(),))
        assert window.lock is Lock.LOCKED
        style_of("** Locked: chat goes end-to-end encrypted")
        # Bob's group session was shared with a reader alice is not shown.
        now_ms = int(clock.seconds() * 1000)
        group = OutboundGroup(bob.session_id, now_ms)
        share = seal(
            bob,
            kind=EnvelopeKind.KEY_SHARE,
            room="chatroom",
            sender="bob",
            text=group.session_key(),
            recipients=[e2e.session.bundle, ghost.bundle],
            counter=1,
            timestamp_ms=now_ms,
        )
        server(Kind.E2E, "bob", "", (share.encode(),))
        readers = [e2e.session.session_id, bob.session_id, ghost.session_id]
        plain = GroupPlain(
            EnvelopeKind.MESSAGE, "chatroom", "bob", now_ms, 3, member_set_hash(readers), "hi alice"
        )
        message = GroupLine("bob", bob.identity.public, bob.session_id, group.group_id, group.encrypt(plain))
        server(Kind.GROUP, "bob", "", (message.encode(),))
        style_of("[E2E, unverified] <bob> hi alice")
        assert "warning" in style_of("!! bob's message was shared with 3 sessions, a different member set")
        server(Kind.MESSAGE, "bob", "forged by the server")
        style_of("-- unauthenticated plain message the server says is from bob")
        assert not any("<bob> forged" in line for line in window.message_lines())
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "chatroom-client-hostile.png"
        subprocess.run(["import", "-window", root.wm_frame(), str(shot)], check=True, timeout=TOOL_TIMEOUT)
    finally:
        root.destroy()


def test_the_window_shows_history_under_a_rule_and_pages_back(window: ChatWindow) -> None:
    now = datetime.now(UTC)
    before = now - timedelta(minutes=5)
    window.line_received(history_line(now, "welcome", "*", "Welcome, you are bob.", "bob"))
    window.line_received(history_line(before, "history", "alice", "hello", "message", "id=41"))
    window.line_received(history_line(before, "history", "alice", "alice waves", "action", "id=42"))
    window.line_received(
        history_line(
            now, "historyend", "*", "2 earlier messages; /history before #41 for more", "count=2", "more=#41"
        )
    )
    window.line_received(history_line(now, "join", "bob", "bob joined from 127.0.0.1:5000"))
    shown = window.message_lines()
    assert shown[1] == f"{local_time(before)} {HISTORY_RULE}"
    assert shown[2] == f"{local_time(before)} <alice> hello"
    assert shown[3] == f"{local_time(before)} * alice waves"
    assert "history" in window.messages.tag_names("3.12") and "history" not in window.messages.tag_names(
        "6.12"
    )
    # The roster is not fooled by replayed joins and leaves.
    assert window.roster.names() == ["bob"]
    window.page_back()
    controller = window.controller
    assert isinstance(controller, RecordingController)
    assert controller.sent == ["/history before #41"]
    # The next run of history lines gets its own rule.
    window.line_received(history_line(before, "history", "carol", "older", "message", "id=3"))
    assert window.message_lines()[-2:] == [
        f"{local_time(before)} {HISTORY_RULE}",
        f"{local_time(before)} <carol> older",
    ]


def history_line(moment: datetime, kind: str, source: str, text: str, *args: str) -> ServerLine:
    return parse_line(format_line(moment.timestamp(), kind, source, text, args))
