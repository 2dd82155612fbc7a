"""
Test helpers for the IRC transport: an IRC factory beside the line one in
L{tests.helpers.make_server}'s room, and an IRC client over a
L{StringTransport}.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatroom.transports.irc.protocol import IRCFactory, IRCProtocol, parse_message
from tests.helpers import Server, StringClient


@dataclass(frozen=True)
class Message:
    """
    One line from the server, parsed.
    """

    raw: str
    tags: str
    source: str
    command: str
    params: list[str]

    @property
    def nick(self) -> str:
        return self.source.partition("!")[0]

    @property
    def text(self) -> str:
        return self.params[-1] if self.params else ""


def parse(raw: str) -> Message:
    tags = raw.partition(" ")[0][1:] if raw.startswith("@") else ""
    rest = raw.partition(" ")[2] if raw.startswith("@") else raw
    source = rest.partition(" ")[0][1:] if rest.startswith(":") else ""
    command, params = parse_message(raw)
    return Message(raw, tags, source, command, params)


def irc_factory(server: Server, channel: str = "#chatroom") -> IRCFactory:
    return IRCFactory(server.sessions, channel)


class IRCClient(StringClient):
    """
    One IRC client connected to an L{IRCFactory} through a L{StringTransport}.
    """

    protocol_type = IRCProtocol
    protocol: IRCProtocol

    def __init__(self, factory: IRCFactory, port: int = 50001, host: str = "127.0.0.1") -> None:
        super().__init__(factory, port, host)

    def messages(self) -> list[Message]:
        """
        The lines received since the last call, parsed; each at most 512
        bytes, tags aside.
        """
        data = self.raw()
        assert data == b"" or data.endswith(b"\r\n"), data
        lines = data.split(b"\r\n")[:-1]
        for line in lines:
            body = line.partition(b" ")[2] if line.startswith(b"@") else line
            assert len(body) + 2 <= 512, line
        return [parse(line.decode("utf-8")) for line in lines]

    def commands(self) -> list[str]:
        return [m.command for m in self.messages()]

    def register(self, nick: str, caps: str = "") -> list[Message]:
        """
        Register as C{nick} (requesting C{caps}, if any) and return what came back.
        """
        if caps:
            self.send("CAP LS 302")
            self.send(f"CAP REQ :{caps}")
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :Real {nick}")
        if caps:
            self.send("CAP END")
        return self.messages()

    def join(self, nick: str, channel: str = "#chatroom", caps: str = "") -> IRCClient:
        """
        Register as C{nick}, join C{channel} and clear what came back.
        """
        replies = self.register(nick, caps)
        assert "001" in [m.command for m in replies], replies
        self.send(f"JOIN {channel}")
        self.messages()
        return self
