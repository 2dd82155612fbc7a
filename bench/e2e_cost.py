"""
What end-to-end encryption costs, measured on the real client code
(L{E2EClient}) in rooms of 10, 100, 1,000 and 5,000 members: the sender's
cost per room message (a group session already shared), one receiver's
cost per message, the line sizes, and the cost of a rotation (a new group
session shared with every member: one HPKE wrap per member, in envelopes
of 64 to MAX_RECIPIENTS members, and the bytes the server then delivers, as
every member listed gets the whole envelope). Then the one-off costs: decoding a key bundle
(what server and clients do per key line), a whisper (one HPKE envelope),
a safety number and the key file's scrypt.

    .venv/bin/python bench/e2e_cost.py [--text-bytes N] [--messages N] [--sizes 10,100,...]

The receiver's figure is the E2E client's handling of a parsed line (the
line parse, which every line costs, plain chat too, is the last column).
Times are CPU time (process_time). Per-message figures are the median of
5 batch means over --messages messages in one group
session (the 100-message rotation is lifted for that measurement only);
the amortised column adds a rotation every GROUP_ROTATE_AFTER_MESSAGES
messages, the worst case (in practice a rotation also comes with every
leave, and costs what the rotation column says).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatroom.e2e import group as group_module
from chatroom.e2e.client import E2EClient, Secure, Send
from chatroom.e2e.envelope import MAX_TEXT_BYTES, SEND_PREFIX, Envelope, EnvelopeKind, seal
from chatroom.e2e.group import GROUP_PREFIX, GROUP_ROTATE_AFTER_MESSAGES, GroupLine, share_batch
from chatroom.e2e.keys import Identity, KeyBundle, Session, encode_b64, safety_number
from chatroom.e2e.pins import PinStore
from chatroom.wire import Kind, format_line, parse_line

ROOM = "chatroom"
# The targets of issue 16.
TARGET_MESSAGE_MS = 0.2
TARGET_LINE_BYTES = 1024
TARGET_ROTATION_MS = 200.0
# Per-message CPU times are the median of this many batches' means (the
# machine is shared: a batch that was descheduled or starved says little).
BATCHES = 5


def per_call(action: Callable[[], object], seconds: float) -> float:
    """
    Mean seconds per call of C{action}, over at least C{seconds} and 3 calls.
    """
    calls, start = 0, time.perf_counter()
    while True:
        action()
        calls += 1
        elapsed = time.perf_counter() - start
        if calls >= 3 and elapsed >= seconds:
            return elapsed / calls


def line(kind: Kind, source: str, text: str = "", args: tuple[str, ...] = ()) -> bytes:
    return format_line(time.time(), kind, source, text, args)


def client_in_room(
    name: str, names: list[str], bundles: dict[str, KeyBundle], identity: Identity
) -> E2EClient:
    """
    An E2E client that sees C{names} with C{bundles}, registered, locked.
    """
    client = E2EClient(identity, PinStore())
    client.start()
    client.receive(line(Kind.WELCOME, "*", f"Welcome, you are {name}", (name,)))
    client.receive(line(Kind.LIST, "*", f"users 1-{len(names)} of {len(names)}", tuple(names)))
    client.receive(line(Kind.CHALLENGE, "*", "sign", (f"room={ROOM}", f"nonce={encode_b64(bytes(32))}")))
    bundles = {**bundles, name: client.session.bundle}
    for member in names:
        if member in bundles:
            client.receive(line(Kind.KEY, member, "key", (bundles[member].encode(),)))
    return client


def deliver(sends: list[Send], sender: str) -> list[bytes]:
    """
    The lines an honest server would hand on for C{sends}.
    """
    lines = []
    for send in sends:
        if send.line.startswith(GROUP_PREFIX):
            lines.append(line(Kind.GROUP, sender, "", (send.line.removeprefix(GROUP_PREFIX),)))
        elif send.line.startswith(SEND_PREFIX):
            lines.append(line(Kind.E2E, sender, "", (send.line.removeprefix(SEND_PREFIX),)))
    return lines


def measure(count: int, text: str, messages: int) -> dict[str, float]:
    """
    The figures for a room of C{count} members.
    """
    names = ["alice", "bob", *(f"m{i}" for i in range(count - 2))]
    alice_id, bob_id = Identity.generate(), Identity.generate()
    others = {name: Session(Identity.generate()).bundle for name in names[2:]}
    alice = client_in_room("alice", names, {**others}, alice_id)
    bob = client_in_room("bob", names, {**others, "alice": alice.session.bundle}, bob_id)
    alice.receive(line(Kind.KEY, "bob", "key", (bob.session.bundle.encode(),)))
    assert alice.secure and bob.secure

    # A rotation: a new group session, shared with every other member.
    cpu = time.process_time()
    first = [e for e in alice.command(text) if isinstance(e, Send)]
    rotation = time.process_time() - cpu
    shares = [s for s in first if s.line.startswith(SEND_PREFIX)]
    assert len(shares) == -(-(count - 1) // share_batch(count - 1)), len(shares)
    share_bytes = max(len(s.line) for s in shares)
    # Every member listed in a share gets the whole envelope.
    envelopes = [Envelope.decode(s.line.removeprefix(SEND_PREFIX)) for s in shares]
    delivered = sum(len(s.line) * len(e.recipients) for s, e in zip(shares, envelopes, strict=True))
    for raw in deliver(first, "alice"):
        bob.receive(raw)

    batch = max(1, messages // BATCHES)
    messages = batch * BATCHES
    sent = []
    batches = []
    with mock.patch.object(group_module, "GROUP_ROTATE_AFTER_MESSAGES", messages + 10):
        for _ in range(BATCHES):
            start = time.process_time()
            sent += [alice.command(text) for _ in range(batch)]
            batches.append((time.process_time() - start) / batch)
    sender = statistics.median(batches)
    assert all(len(events) == 1 and isinstance(events[0], Send) for events in sent)
    lines = [deliver(events, "alice")[0] for events in sent]  # type: ignore[arg-type]
    # The receiver's cost is the E2E client's handling of a parsed line;
    # parsing the line (its timestamp above all) is what every line costs,
    # plain chat too, and is printed apart.
    start = time.perf_counter()
    parsed = [parse_line(raw) for raw in lines]
    line_parse = (time.perf_counter() - start) / messages
    received, batches = [], []
    for first_line in range(0, messages, batch):
        start = time.process_time()
        received += [bob.handle(server_line) for server_line in parsed[first_line : first_line + batch]]
        batches.append((time.process_time() - start) / batch)
    receiver = statistics.median(batches)
    assert all(len(r) == 1 and isinstance(r[0], Secure) and r[0].text == text for r in received), received[0]
    payload = sent[0][0].line.removeprefix(GROUP_PREFIX)  # type: ignore[union-attr]
    parse = per_call(lambda: GroupLine.decode(payload), 0.2)
    return {
        "sender": sender,
        "receiver": receiver,
        "client line": len(sent[0][0].line.encode()) + 2,  # type: ignore[union-attr]
        "server line": len(lines[0]),
        "rotation": rotation,
        "share line": share_bytes,
        "delivered": delivered,
        "shares": len(shares),
        "parse": parse,
        "line parse": line_parse,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text-bytes", type=int, default=200, help="plaintext size (default 200)")
    parser.add_argument("--messages", type=int, default=500, help="messages per measurement (default 500)")
    parser.add_argument("--sizes", default="10,100,1000,5000", help="room sizes (default 10,100,1000,5000)")
    parser.add_argument("--seconds", type=float, default=0.5, help="time per one-off measurement")
    options = parser.parse_args()
    text = "x" * min(options.text_bytes, MAX_TEXT_BYTES)
    sizes = [int(size) for size in options.sizes.split(",")]
    print(
        f"plaintext {len(text)} bytes; CPU times; per message: the median of {BATCHES} batch means over"
        f" {options.messages} messages"
    )
    print(
        f"targets: <= {TARGET_MESSAGE_MS} ms per message (sender, receiver), line < {TARGET_LINE_BYTES}"
        f" bytes, rotation at 1,000 members < {TARGET_ROTATION_MS:.0f} ms sender CPU"
    )
    print()
    header = (
        f"{'members':>7} {'sender':>9} {'receiver':>9} {'line up':>8} {'line down':>9}"
        f" {'server parse':>12} {'rotation CPU':>12} {'shares':>6} {'share line':>10} {'amortised':>10}"
        f" {'line parse':>10} {'rotation bytes down':>19}"
    )
    print(header)
    print("-" * len(header))
    for count in sizes:
        f = measure(count, text, options.messages)
        amortised = f["sender"] + f["rotation"] / GROUP_ROTATE_AFTER_MESSAGES
        print(
            f"{count:>7} {f['sender'] * 1e3:>6.3f} ms {f['receiver'] * 1e3:>6.3f} ms {f['client line']:>8.0f}"
            f" {f['server line']:>9.0f} {f['parse'] * 1e6:>9.1f} us {f['rotation'] * 1e3:>9.1f} ms"
            f" {f['shares']:>6.0f} {f['share line']:>10.0f} {amortised * 1e3:>7.3f} ms"
            f" {f['line parse'] * 1e3:>7.3f} ms {f['delivered'] / 1e6:>16.1f} MB"
        )
    one_off_costs(options.seconds, text)


def one_off_costs(seconds: float, text: str) -> None:
    """
    Print what a key line, a whisper, a safety number and a key file
    passphrase cost.
    """
    alice, bob = Identity.generate(), Identity.generate()
    alice_session, bob_session = Session(alice), Session(bob)
    bundle = bob_session.bundle.encode()
    print()
    decode = per_call(lambda: KeyBundle.decode(bundle), seconds)
    print(f"key bundle decode (per key line): {decode * 1e3:.3f} ms")

    def whisper() -> object:
        return seal(
            alice_session,
            kind=EnvelopeKind.WHISPER,
            room=ROOM,
            sender="alice",
            target="bob",
            text=text,
            recipients=[bob_session.bundle, alice_session.bundle],
            counter=1,
            timestamp_ms=int(time.time() * 1000),
        )

    print(f"whisper (HPKE envelope, 2 wraps): {per_call(whisper, seconds) * 1e3:.3f} ms")
    number = per_call(lambda: safety_number(alice.public, "alice", bob.public, "bob"), seconds)
    print(f"safety number (/verify): {number * 1e3:.1f} ms")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "identity.pem"
        alice.save(path, b"passphrase")
        start = time.perf_counter()
        Identity.load(path, b"passphrase")
        print(f"key file passphrase (scrypt, one guess): {(time.perf_counter() - start) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
