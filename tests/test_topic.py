"""
The room topic (/topic, in the moderation feature) on the line protocol, and
how it is kept beside the bans.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatroom.bans import BanList
from chatroom.features.moderation import ModerationSettings
from chatroom.state import StateError
from chatroom.stores.files import DocumentBanStore, load_bans, load_topic
from tests.helpers import FakeClient, connect_named, make_server


def test_only_admins_set_the_topic_anyone_reads_it() -> None:
    server = make_server(moderation=ModerationSettings(first_admin=True))
    alice, bob = connect_named(server.factory, "alice", "bob")
    bob.send("/topic mine now")
    (line,) = bob.lines()
    assert (line.kind, line.text) == ("error", "permission denied: only an admin can set the topic")
    assert alice.lines() == []
    bob.send("/topic")
    assert [(line.kind, line.text) for line in bob.lines()] == [("topic", "no topic is set")]
    alice.send("/topic release on Friday")
    for client in (alice, bob):
        (line,) = client.lines()
        assert (line.kind, line.source, line.text) == (
            "topic",
            "alice",
            "alice set the topic: release on Friday",
        )
    carol = FakeClient(server.factory, 40500)
    topics = [line.text for line in carol.lines() if line.kind == "topic"]
    assert topics == ["the topic is: release on Friday (set by alice, 2026-11-18T11:06:40.000Z)"]
    bob.lines()
    alice.send("/topic -")
    assert [line.text for line in bob.lines()] == ["alice cleared the topic"]
    assert [line.kind for line in FakeClient(server.factory, 40502).lines()].count("topic") == 0


def test_the_topic_is_kept_with_the_bans(tmp_path: Path) -> None:
    path = tmp_path / "moderation.json"
    store = DocumentBanStore(BanList(), lambda document: path.write_text(json.dumps(document)))
    server = make_server(moderation=ModerationSettings(first_admin=True, bans=store, topics=store))
    (alice,) = connect_named(server.factory, "alice")
    alice.send("/topic hello")
    loaded = load_topic(path)
    assert loaded is not None and (loaded.text, loaded.by, loaded.at) == (
        "hello",
        "alice",
        server.clock.seconds(),
    )
    assert load_bans(path).active(server.clock.seconds()) == []
    alice.send("/topic -")
    assert load_topic(path) is None


def test_a_corrupt_topic_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "moderation.json"
    path.write_text(json.dumps({"version": 1, "bans": [], "topic": {"text": 5}}))
    with pytest.raises(StateError, match="corrupt"):
        load_topic(path)
    assert load_topic(tmp_path / "missing.json") is None
