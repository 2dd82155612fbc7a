"""
End-to-end encryption: the server forwards what it cannot read.

L{chatroom.e2e.keys} holds identity and session keys, L{chatroom.e2e.envelope}
the one-line envelope (seal and open: whispers and key shares),
L{chatroom.e2e.group} the per-sender group sessions room messages go in,
L{chatroom.e2e.pins} the trust-on-first-use pin store, L{chatroom.e2e.client}
the headless client that ties them together, and L{chatroom.features.e2e} the
daemon's side: the key directory and forwarding.
``docs/security.rst`` states the threat model.
"""
