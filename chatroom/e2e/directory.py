"""
The daemon's E2E key directory: the port, and its in-memory implementation.

It lives beside the keys it holds, not in a layer of the daemon, so that
the E2E feature and a shared store (chatroom.stores.redis) use one
implementation.
"""

from __future__ import annotations

from typing import Protocol

from chatroom.core.errors import ChatError
from chatroom.e2e.keys import KeyBundle


class KeyDirectory(Protocol):
    """
    The port for the key bundles of the members that registered one, each
    findable by member and by session key id, and their open challenges.
    """

    def register(self, member_id: str, bundle: KeyBundle) -> None:
        """
        @raise ChatError: If another member registered the same session key.
        """

    def drop(self, member_id: str) -> bool:
        """
        Forget C{member_id}'s keys and challenge; whether it had keys.
        """

    def get(self, member_id: str) -> KeyBundle | None: ...

    def holder(self, session_id: bytes) -> str | None:
        """
        The id of the member that registered session key C{session_id}.
        """

    def items(self) -> list[tuple[str, KeyBundle]]: ...

    def set_challenge(self, member_id: str, challenge: bytes) -> None: ...

    def take_challenge(self, member_id: str) -> bytes | None:
        """
        The member's open challenge, which is gone once taken.
        """


class InMemoryKeyDirectory:
    """
    A L{KeyDirectory} in this process.
    """

    def __init__(self) -> None:
        self._bundles: dict[str, KeyBundle] = {}
        self._by_session: dict[bytes, str] = {}
        self._challenges: dict[str, bytes] = {}

    def register(self, member_id: str, bundle: KeyBundle) -> None:
        holder = self._by_session.get(bundle.session_id)
        if holder is not None and holder != member_id:
            raise ChatError("that session key is registered by someone else: make a new one")
        self.drop(member_id)
        self._bundles[member_id] = bundle
        self._by_session[bundle.session_id] = member_id

    def drop(self, member_id: str) -> bool:
        self._challenges.pop(member_id, None)
        bundle = self._bundles.pop(member_id, None)
        if bundle is None:
            return False
        del self._by_session[bundle.session_id]
        return True

    def get(self, member_id: str) -> KeyBundle | None:
        return self._bundles.get(member_id)

    def holder(self, session_id: bytes) -> str | None:
        return self._by_session.get(session_id)

    def items(self) -> list[tuple[str, KeyBundle]]:
        return list(self._bundles.items())

    def set_challenge(self, member_id: str, challenge: bytes) -> None:
        self._challenges[member_id] = challenge

    def take_challenge(self, member_id: str) -> bytes | None:
        return self._challenges.pop(member_id, None)
