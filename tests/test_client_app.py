"""
The client's command line and how it quits, without Tk.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from chatroom.client.app import QUIT_TIMEOUT, ClientApp, display_address, parse_args
from chatroom.client.session import ChatSession
from chatroom.tls import create_local_ca
from tests.client_support import POLICY, FakeEndpoint, RecordingView


@pytest.fixture
def ca_path(tmp_path: Path) -> Path:
    return create_local_ca(tmp_path, datetime.datetime.now(datetime.UTC))


def test_defaults_reach_a_local_daemon(ca_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ca_path.parent.parent)
    ca_path.parent.rename(ca_path.parent.parent / "certs")
    args = parse_args([])
    assert (args.host, args.port, args.nick) == ("localhost", 6697, None)
    assert len(args.ca_certificates) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nick", "9lives"], "--nick '9lives': a name starts with a letter"),
        (["--port", "0"], "--port must be 1 to 65535"),
        (["--ca", "/nonexistent/ca.pem"], "cannot read the CA file /nonexistent/ca.pem"),
        (["--ca", "/dev/null"], "no PEM certificate in the file"),
    ],
)
def test_bad_arguments_are_usage_errors(
    argv: list[str], message: str, ca_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        parse_args(["--ca", str(ca_path), *argv])
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_display_address() -> None:
    assert display_address("localhost", 6697) == "localhost:6697"
    assert display_address("::1", 6697) == "[::1]:6697"


class FakeReactor(Clock):
    running = True

    def stop(self) -> None:
        assert self.running
        self.running = False


def quitting_app() -> tuple[ClientApp, FakeEndpoint, FakeReactor]:
    reactor, endpoint = FakeReactor(), FakeEndpoint()
    session = ChatSession(reactor, endpoint, "here", None, POLICY)
    session.start(RecordingView())
    return ClientApp(reactor, session), endpoint, reactor


def test_quit_says_goodbye_then_stops_the_reactor() -> None:
    app, endpoint, reactor = quitting_app()
    protocol, transport = endpoint.accept()
    app.quit()
    app.quit()
    assert transport.value() == b"/quit\n"
    assert reactor.running
    protocol.connectionLost()
    assert not reactor.running
    assert reactor.getDelayedCalls() == []


def test_quit_does_not_wait_for_a_hung_network() -> None:
    app, endpoint, reactor = quitting_app()
    endpoint.accept()
    app.quit()
    reactor.advance(QUIT_TIMEOUT)
    assert not reactor.running
