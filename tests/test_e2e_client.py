"""
The headless E2E client against the in-memory E2E room: what each user
gets, and every way a message is refused.
"""

from __future__ import annotations

from dataclasses import replace

from chatroom.e2e.client import (
    REPLAY_WINDOW_SECONDS,
    ROTATE_AFTER_MS,
    Alert,
    KeyChanged,
    LockChange,
    NewKey,
    Notice,
    Rejected,
    Secure,
    Show,
)
from chatroom.e2e.envelope import SEND_PREFIX, Envelope, EnvelopeKind, seal
from chatroom.e2e.group import GROUP_PREFIX
from chatroom.e2e.keys import Identity
from chatroom.e2e.pins import PinStore
from chatroom.wire import Kind, format_line
from tests.e2e_helpers import Party, join, make_e2e_room, settle


def secure(party: Party) -> list[tuple[str, str, str]]:
    return [(e.kind.name, e.sender, e.text) for e in party.take(Secure)]  # type: ignore[attr-defined]


def envelope_line(sender: Party, envelope: Envelope, source: str | None = None) -> bytes:
    """
    An e2e line as the server would forward it, from C{source}.
    """
    now = sender.client.clock()
    return format_line(now, Kind.E2E, source or sender.client.name, "", (envelope.encode(),))


def sealed(by: Party, recipients: list[Party], text: str, **fields: object) -> Envelope:
    arguments: dict[str, object] = {
        "kind": EnvelopeKind.MESSAGE,
        "room": "chatroom",
        "sender": by.client.name,
        "text": text,
        "recipients": [p.client.session.bundle for p in recipients],
        "counter": 1000,
        "timestamp_ms": int(by.client.clock() * 1000),
    }
    arguments.update(fields)
    return seal(by.client.session, **arguments)  # type: ignore[arg-type]


def test_three_users_chat_end_to_end() -> None:
    _, _, factory = make_e2e_room()
    clock = factory.sessions.clock
    alice, bob, carol = join(factory, clock, "alice", "bob", "carol")  # type: ignore[arg-type]
    assert all(p.client.secure for p in (alice, bob, carol))
    before = len(alice.sent)
    alice.type("the launch code is 1234")
    # Alice's group session, shared once with each member, then the message.
    *shares, line = alice.sent[before:]
    assert [Envelope.decode(s.removeprefix(SEND_PREFIX)).kind for s in shares] == [EnvelopeKind.KEY_SHARE]
    assert line.startswith(GROUP_PREFIX) and "1234" not in line
    settle(alice, bob, carol)
    for party in (alice, bob, carol):
        assert secure(party) == [("MESSAGE", "alice", "the launch code is 1234")]
        assert b"1234" not in party.raw
    bob.type("/me nods")
    settle(alice, bob, carol)
    assert secure(carol) == [("ACTION", "bob", "nods")]


def test_new_members_are_announced_with_their_fingerprint_unverified() -> None:
    _, clock, factory = make_e2e_room()
    (alice,) = join(factory, clock, "alice")
    bob = Party(factory, clock, 42001)
    bob.type("/nick bob")
    settle(alice, bob)
    (announced,) = [e for e in alice.events if isinstance(e, NewKey) and e.name == "bob"]
    assert announced.fingerprint == bob.client.identity.fingerprint
    assert "unverified" in announced.text
    bob.type("hi")
    settle(alice, bob)
    (got,) = alice.take(Secure)
    assert isinstance(got, Secure) and not got.verified and got.fingerprint == bob.client.identity.fingerprint


def test_verify_shows_the_same_number_on_both_sides_and_marks_verified() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob = join(factory, clock, "alice", "bob")
    alice.type("/verify bob")
    bob.type("/verify alice")
    (on_alice,) = alice.take(Notice)
    (on_bob,) = bob.take(Notice)
    number = on_alice.text.split(": ")[1].split(" (")[0]  # type: ignore[attr-defined]
    assert len(number) == 71 and number in on_bob.text  # type: ignore[attr-defined]
    alice.type("/verify bob ok")
    bob.type("hello")
    settle(alice, bob)
    (got,) = alice.take(Secure)
    assert isinstance(got, Secure) and got.verified


def test_whisper_is_end_to_end_to_one_recipient() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob, carol = join(factory, clock, "alice", "bob", "carol")
    carol.raw.clear()
    alice.type("/whisper bob meet at noon")
    assert "noon" not in alice.sent[-1]
    settle(alice, bob, carol)
    assert secure(bob) == [("WHISPER", "alice", "meet at noon")]
    assert [e.target for e in alice.take(Secure)] == ["bob"]  # type: ignore[attr-defined]
    assert carol.raw == b"" and carol.take() == []


def test_the_sender_shown_comes_from_the_key_not_the_server() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob, _carol = join(factory, clock, "alice", "bob", "carol")
    # A server that labels alice's message as carol's changes nothing.
    line = envelope_line(alice, sealed(alice, [bob], "from alice"), source="carol")
    bob.handle(bob.client.receive(line))
    assert secure(bob) == [("MESSAGE", "alice", "from alice")]


def test_a_forged_sender_is_refused_and_blocks_no_one() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob, mallory = join(factory, clock, "alice", "bob", "mallory")
    # Mallory signs with her own key but writes alice's name.
    forged = sealed(mallory, [bob], "send money", sender="alice")
    bob.handle(bob.client.receive(envelope_line(mallory, forged, source="alice")))
    (rejected,) = bob.take()
    assert isinstance(rejected, Rejected) and "not signed by the key listed for alice" in rejected.reason
    # A forged envelope is not a key change: alice is not blocked by it.
    assert not bob.client.blocked
    # The server itself refuses an envelope that names someone else.
    mallory.type(SEND_PREFIX + forged.encode())
    settle(alice, bob, mallory)
    assert [line.line.kind for line in mallory.take(Show)] == ["error"]  # type: ignore[attr-defined]
    assert bob.take() == []


def reject_reason(party: Party, line: bytes) -> str:
    party.handle(party.client.receive(line))
    events = party.take()
    assert [type(e) for e in events] == [Rejected], events
    return events[0].reason  # type: ignore[attr-defined]


def test_replays_and_reordering_are_refused() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob = join(factory, clock, "alice", "bob")
    first = envelope_line(alice, sealed(alice, [bob], "one", counter=5))
    bob.handle(bob.client.receive(first))
    assert secure(bob) == [("MESSAGE", "alice", "one")]
    assert "replay" in reject_reason(bob, first)
    older = envelope_line(alice, sealed(alice, [bob], "zero", counter=4))
    assert "counter went backwards" in reject_reason(bob, older)
    same = envelope_line(alice, sealed(alice, [bob], "again", counter=5))
    assert "counter went backwards" in reject_reason(bob, same)


def test_stale_and_future_messages_are_refused() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob = join(factory, clock, "alice", "bob")
    now_ms = int(clock.seconds() * 1000)
    window_ms = int(REPLAY_WINDOW_SECONDS * 1000)
    for offset in (-window_ms - 1, window_ms + 1):
        line = envelope_line(alice, sealed(alice, [bob], "late", timestamp_ms=now_ms + offset))
        assert "stale" in reject_reason(bob, line)
    ok = envelope_line(alice, sealed(alice, [bob], "in time", timestamp_ms=now_ms - window_ms + 1000))
    bob.handle(bob.client.receive(ok))
    assert secure(bob) == [("MESSAGE", "alice", "in time")]
    # A message held back by the server until it is stale is refused too.
    held = envelope_line(alice, sealed(alice, [bob], "held", counter=2000))
    clock.advance(REPLAY_WINDOW_SECONDS + 1)
    assert "stale" in reject_reason(bob, held)


def test_wrong_room_and_wrong_recipient_are_refused() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob, carol = join(factory, clock, "alice", "bob", "carol")
    other_room = envelope_line(alice, sealed(alice, [bob], "x", room="elsewhere"))
    assert "another room" in reject_reason(bob, other_room)
    for_carol = envelope_line(alice, sealed(alice, [carol, alice], "x"))
    assert "not addressed to you" in reject_reason(bob, for_carol)


def test_a_tampered_line_is_refused() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob = join(factory, clock, "alice", "bob")
    envelope = sealed(alice, [bob], "pay 10")
    swapped = replace(envelope, counter=envelope.counter + 1)
    assert "bad signature" in reject_reason(bob, envelope_line(alice, swapped))
    text = envelope.encode()
    flipped = text[:40] + ("A" if text[40] != "A" else "B") + text[41:]
    line = format_line(clock.seconds(), Kind.E2E, "alice", "", (flipped,))
    reject_reason(bob, line)


def test_a_changed_key_is_loud_and_stops_sending_until_trust() -> None:
    _, clock, factory = make_e2e_room()
    alice_pins = PinStore()
    alice = Party(factory, clock, 41001, pins=alice_pins)
    bob, carol = join(factory, clock, "bob", "carol", others=(alice,))
    alice.type("/nick alice")
    settle(alice, bob, carol)
    alice.take()
    # Carol comes back with a new identity key.
    carol.wire.disconnect()
    carol2 = Party(factory, clock, 42001)
    carol2.type("/nick carol")
    settle(alice, bob, carol2)
    changed = [e for e in alice.events if isinstance(e, KeyChanged)]
    assert len(changed) == 1 and changed[0].name == "carol"
    assert "CHANGED" in changed[0].text and changed[0].new_fingerprint == carol2.client.identity.fingerprint
    alice.take()
    assert not alice.client.secure or alice.client.blocked
    sent = len(alice.sent)
    alice.type("anyone there?")
    alice.type("/whisper carol are you you?")
    assert len(alice.sent) == sent
    assert all("not sent" in n.text for n in alice.take(Notice))  # type: ignore[attr-defined]
    # Carol's messages are refused too until alice trusts the new key.
    carol2.type("it's me")
    settle(alice, bob, carol2)
    assert alice.take(Secure) == []
    assert secure(bob) == [] and len(secure(carol2)) == 1
    alice.type("/trust carol")
    assert "trusted" in alice.take(Notice)[0].text  # type: ignore[attr-defined]
    alice.type("welcome back")
    settle(alice, bob, carol2)
    assert secure(carol2) == [("MESSAGE", "alice", "welcome back")]
    alice.type("/trust carol")
    assert "nothing to trust" in alice.take(Notice)[0].text  # type: ignore[attr-defined]


def test_kicked_and_banned_members_are_absent_from_the_very_next_message() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob, carol, dave = join(factory, clock, "alice", "bob", "carol", "dave")
    for command, gone, stay in (("/kick bob", bob, carol), ("/ban carol 1h", carol, dave)):
        alice.type(command)
        settle(alice, bob, carol, dave)
        for party in (alice, bob, carol, dave):
            party.take()
        gone.raw.clear()
        before = len(alice.sent)
        alice.type(f"after {command}")
        # A new group session, shared with those who stay only.
        *shares, line = alice.sent[before:]
        (share,) = (Envelope.decode(s.removeprefix(SEND_PREFIX)) for s in shares)
        assert share.kind is EnvelopeKind.KEY_SHARE
        assert gone.client.session.session_id not in share.recipient_ids()
        assert stay.client.session.session_id in share.recipient_ids()
        assert line.startswith(GROUP_PREFIX)
        settle(alice, stay)
        assert secure(stay) == [("MESSAGE", "alice", f"after {command}")]
        assert gone.wire.transport.value() == b""
    assert share.recipient_ids() == {dave.client.session.session_id}


def test_filters_apply_to_encrypted_messages_on_the_client() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob, carol = join(factory, clock, "alice", "bob", "carol")
    bob.type("/filter Spoiler")
    settle(alice, bob, carol)
    bob.take()
    alice.type("big SPOILER ahead")
    alice.type("/whisper bob another spoiler")
    alice.type("harmless")
    settle(alice, bob, carol)
    assert secure(bob) == [("MESSAGE", "alice", "harmless")]
    assert len(secure(carol)) == 2
    bob.type("spoilers for me too")
    settle(alice, bob, carol)
    assert secure(bob) == [("MESSAGE", "bob", "spoilers for me too")]
    bob.type("/unfilter spoiler")
    alice.type("spoiler now shown")
    settle(alice, bob, carol)
    assert secure(bob) == [("MESSAGE", "alice", "spoiler now shown")]


def test_a_member_without_keys_unlocks_the_room() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob = join(factory, clock, "alice", "bob")
    plain = Party(factory, clock, 41999, e2e=False)
    settle(alice, bob, plain)
    assert not alice.client.secure
    (unlock,) = alice.take(LockChange)
    assert isinstance(unlock, LockChange) and unlock.missing == ("guest3",) and "/plain" in unlock.text
    # The room was locked: nothing goes in the clear without consent.
    alice.type("plain now")
    assert alice.sent[-1] != "plain now"
    (refusal,) = alice.take(Notice)
    assert "guest3 has no keys" in refusal.text and "/plain" in refusal.text  # type: ignore[attr-defined]
    alice.type("/plain")
    assert "IN THE CLEAR" in alice.take(Notice)[0].text  # type: ignore[attr-defined]
    alice.type("plain now")
    assert alice.sent[-1] == "plain now"
    settle(alice, bob, plain)
    assert [s.line.text for s in plain.take(Show) if s.line.kind == "message"] == ["plain now"]  # type: ignore[attr-defined]
    alice.client.required = True
    alice.type("refused in the clear")
    alice.type("/whisper guest3 refused too")
    assert alice.sent[-1] == "plain now"
    assert [n.text.startswith("not sent") for n in alice.take(Notice)] == [True, True]  # type: ignore[attr-defined]
    plain.wire.disconnect()
    settle(alice, bob)
    assert alice.client.secure
    assert [e.locked for e in alice.take(LockChange)] == [True]  # type: ignore[attr-defined]
    # A whisper to a member with keys stays encrypted all along.
    alice.type("/whisper bob still private")
    assert alice.sent[-1].startswith(SEND_PREFIX)


def test_switching_e2e_off_sends_plain_text() -> None:
    _, clock, factory = make_e2e_room()
    alice, _bob = join(factory, clock, "alice", "bob")
    alice.client.enabled = False
    assert not alice.client.secure
    alice.type("/me is in the clear")
    assert alice.sent[-1] == "/me is in the clear"


def test_a_renamed_member_keeps_the_key_under_the_new_name() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob = join(factory, clock, "alice", "bob")
    alice.type("/nick alicia")
    settle(alice, bob)
    news = [e for e in bob.take() if isinstance(e, NewKey)]
    assert [e.name for e in news] == ["alicia"]
    assert news[0].fingerprint == alice.client.identity.fingerprint
    alice.type("new name")
    settle(alice, bob)
    assert secure(bob) == [("MESSAGE", "alicia", "new name")]


def test_control_characters_in_decrypted_text_cannot_forge_lines() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob = join(factory, clock, "alice", "bob")
    envelope = sealed(alice, [bob], "hi\r\n2026-01-01T00:00:00.000Z message bob :fake")
    bob.handle(bob.client.receive(envelope_line(alice, envelope)))
    ((_kind, sender, text),) = secure(bob)
    assert "\n" not in text and "\r" not in text and sender == "alice"


def test_identity_and_pins_persist_across_client_restarts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, clock, factory = make_e2e_room()
    key_path, pin_path = tmp_path / "identity.pem", tmp_path / "pins.json"
    (bob,) = join(factory, clock, "bob")
    first = Party(factory, clock, 42001, Identity.load_or_create(key_path), PinStore(pin_path))
    first.type("/nick alice")
    settle(first, bob)
    first.wire.disconnect()
    again = Party(factory, clock, 42002, Identity.load_or_create(key_path), PinStore(pin_path))
    again.type("/nick alice")
    settle(again, bob)
    assert again.client.identity.public == first.client.identity.public
    assert not [e for e in bob.take() if isinstance(e, KeyChanged)]
    assert again.client.session.session_id != first.client.session.session_id
    again.type("same me")
    settle(again, bob)
    assert secure(bob) == [("MESSAGE", "alice", "same me")]


def test_pings_are_answered() -> None:
    _, clock, factory = make_e2e_room()
    (alice,) = join(factory, clock, "alice")
    alice.handle(alice.client.receive(format_line(clock.seconds(), Kind.PING, "*", "reply", ("123",))))
    assert alice.sent[-1] == "/pong 123"


def test_a_session_key_is_renewed_half_way_through_its_lifetime() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob = join(factory, clock, "alice", "bob")
    first = alice.client.session.bundle
    clock.advance(ROTATE_AFTER_MS / 1000 + 1)
    alice.type("renewed")
    settle(alice, bob)
    assert alice.client.session.bundle != first
    assert alice.client.session.bundle.issued_ms > first.issued_ms
    assert bob.client.directory["alice"][1] == alice.client.session.bundle
    # Bob was not alarmed: same identity, new session.
    assert not [e for e in bob.take() if isinstance(e, KeyChanged | NewKey)]
    alice.type("from the new session")
    settle(alice, bob)
    assert secure(bob)[-1] == ("MESSAGE", "alice", "from the new session")
    assert alice.client.secure and bob.client.secure


def test_plain_chat_is_filtered_on_the_client_too() -> None:
    _, clock, factory = make_e2e_room()
    (alice,) = join(factory, clock, "alice")
    plain = Party(factory, clock, 41999, e2e=False)
    settle(alice, plain)
    alice.type("/filter spoiler")
    assert not any(line.startswith("/filter") for line in alice.sent)
    plain.write("a spoiler here")
    plain.write("nothing to hide")
    settle(alice, plain)
    shown = [s.line.text for s in alice.take(Show) if s.line.kind == "message"]  # type: ignore[attr-defined]
    assert shown == ["nothing to hide"]


def test_an_honest_server_causes_no_warnings() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob, carol = join(factory, clock, "alice", "bob", "carol")
    everyone = [alice, bob, carol]
    for party, text in ((alice, "one"), (bob, "/me two"), (carol, "/whisper alice three")):
        party.type(text)
        settle(*everyone)
    # A newcomer, a rename, a leave, a message right after each.
    dave = Party(factory, clock, 42010)
    dave.type("/nick dave")
    everyone.append(dave)
    settle(*everyone)
    alice.type("hello dave")
    settle(*everyone)
    bob.type("/nick robert")
    settle(*everyone)
    bob.type("renamed")
    carol.wire.disconnect()
    everyone.remove(carol)
    settle(*everyone)
    dave.type("bye carol")
    settle(*everyone)
    for party in everyone:
        events = party.take()
        assert not [e for e in events if isinstance(e, Alert | Rejected | KeyChanged)], events
