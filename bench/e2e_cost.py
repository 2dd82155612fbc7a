"""
What end-to-end encryption costs: encrypt+sign for the sender,
verify+decrypt for one receiver, the server's parse, and the line size, for
10, 100 and 1000 recipients and for the largest room the E2E line limit
allows; then the one-off costs: decoding a key bundle (signature and
small-order check, what server and clients do per key line), a safety
number (two iterated fingerprints) and the key file's scrypt.

    .venv/bin/python bench/e2e_cost.py [--text-bytes N] [--seconds S]

Rooms larger than MAX_RECIPIENTS cannot use E2E (their envelope would not
fit one line); they are measured anyway, with the limit lifted for the
measurement only, to show how the cost grows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatroom.e2e import envelope as envelope_module
from chatroom.e2e.envelope import (
    E2E_MAX_LINE_BYTES,
    MAX_RECIPIENTS,
    MAX_TEXT_BYTES,
    SEND_PREFIX,
    Envelope,
    EnvelopeKind,
    seal,
)
from chatroom.e2e.keys import Identity, KeyBundle, Session, safety_number


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


def measure(sender: Session, count: int, text: str, seconds: float) -> tuple[int, float, float, float]:
    """
    Line size, encrypt+sign, verify+decrypt and parse times for C{count}
    recipients (the sender among them).
    """
    group = [sender, *(Session(Identity.generate()) for _ in range(count - 1))]
    bundles = [s.bundle for s in group]
    counter = iter(range(1, 10**9))

    def encrypt() -> Envelope:
        return seal(
            sender,
            kind=EnvelopeKind.MESSAGE,
            room="chatroom",
            sender="alice",
            text=text,
            recipients=bundles,
            counter=next(counter),
            timestamp_ms=int(time.time() * 1000),
        )

    with mock.patch.object(envelope_module, "MAX_RECIPIENTS", max(count, MAX_RECIPIENTS)):
        line = encrypt().encode()

        def decrypt() -> str:
            envelope = Envelope.decode(line)
            envelope.verify()
            return envelope.decrypt(group[-1])

        assert decrypt() == text
        return (
            len(SEND_PREFIX) + len(line),
            per_call(encrypt, seconds),
            per_call(decrypt, seconds),
            per_call(lambda: Envelope.decode(line), seconds),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text-bytes", type=int, default=200, help="plaintext size (default 200)")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement (default 1)")
    options = parser.parse_args()
    text = "x" * min(options.text_bytes, MAX_TEXT_BYTES)
    sender = Session(Identity.generate())
    print(f"E2E line limit {E2E_MAX_LINE_BYTES} bytes: at most {MAX_RECIPIENTS} recipients per envelope")
    print(f"plaintext {len(text)} bytes; times are means over >= {options.seconds:g} s")
    print()
    header = (
        f"{'recipients':>10} {'line bytes':>10} {'fits':>4} {'encrypt+sign':>13}"
        f" {'verify+decrypt':>15} {'server parse':>13} {'per recipient':>14}"
    )
    print(header)
    print("-" * len(header))
    for count in sorted({10, 100, MAX_RECIPIENTS, 1000}):
        size, seal_time, open_time, parse_time = measure(sender, count, text, options.seconds)
        fits = "yes" if size <= E2E_MAX_LINE_BYTES else "no"
        print(
            f"{count:>10} {size:>10} {fits:>4} {seal_time * 1e3:>10.2f} ms {open_time * 1e3:>12.2f} ms"
            f" {parse_time * 1e3:>10.2f} ms {seal_time / count * 1e6:>11.1f} us"
        )
    one_off_costs(options.seconds)


def one_off_costs(seconds: float) -> None:
    """
    Print what a key line, a safety number and a key file passphrase cost.
    """
    alice, bob = Identity.generate(), Identity.generate()
    bundle = Session(bob).bundle.encode()
    print()
    print(f"key bundle decode: {per_call(lambda: KeyBundle.decode(bundle), seconds) * 1e3:.3f} ms")
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
