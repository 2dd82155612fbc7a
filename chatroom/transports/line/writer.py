"""
The write path from the room to the sockets: one write per connection per turn.

A broadcast hands the same line to every member; L{LineWriter} only queues
it. Once per reactor turn, L{TurnFlusher} joins each connection's queued
lines and writes them at once: one TLS record (up to 16 KiB) and one
C{send} per connection, however many lines fell due to it in that turn.

Over TLS on a TCP connection, L{TLSLineWriter} skips the Python layers of
Twisted's TLS wrapper for that write (they cost more than the encryption
itself, and the TCP transport's buffering adds two epoll calls per write):
it encrypts straight through OpenSSL into the memory BIO, reads the
ciphertext into one shared buffer and sends it on the socket at once. It
leaves the write to Twisted whenever Twisted holds state of its own
(handshake not done, data already buffered, a connection closing), so the
lines of one connection always leave in the order they were queued.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import IReactorTime, ITransport
from twisted.internet.tcp import Connection as TCPConnection
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol

# Plaintext per TLS record, the most TLS allows; its ciphertext always fits
# the read buffer.
RECORD_PLAINTEXT = 2**14
CIPHER_BUFFER = 2**15
# OpenSSL's memory BIO keeps its buffer at the largest size it ever held:
# after writing more than this at once, a connection gets a new, empty BIO,
# so idle connections do not each keep a 20 KiB buffer from a past burst.
BIO_KEEP = 2**12

# pyOpenSSL's cffi bindings, used directly on the hot path: one C call per
# step instead of several Python calls. Should a future pyOpenSSL lack them,
# TLS connections get the plain LineWriter (Twisted's own path).
_lib: Any = getattr(SSL, "_lib", None)
_ffi: Any = getattr(SSL, "_ffi", None)
_HAVE_CFFI = all(
    hasattr(_lib, name)
    for name in ("SSL_write", "SSL_set_bio", "BIO_new", "BIO_s_mem", "BIO_read", "ERR_clear_error")
) and hasattr(_ffi, "new")


class TurnFlusher:
    """
    Writes every connection's queued lines once per reactor turn.

    @ivar _dirty: The writers with lines queued since the last flush.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, fast_path: bool = True) -> None:
        """
        @param fast_path: Whether TLS connections may use L{TLSLineWriter};
            without it every connection writes through its transport's
            public C{write} (Twisted's own TLS path).
        """
        self._clock = clock
        self._fast_path = fast_path and _HAVE_CFFI
        self._dirty: list[LineWriter] = []
        self._scheduled = False
        # Shared by every TLS writer: ciphertext goes out before the next write.
        self._cipher_buffer: Any = _ffi.new("char[]", CIPHER_BUFFER) if _HAVE_CFFI else None
        self._cipher_view: Any = memoryview(_ffi.buffer(self._cipher_buffer)) if _HAVE_CFFI else None

    def writer(self, transport: ITransport) -> LineWriter:
        """
        A writer for one connection's C{transport}: the TLS fast path when
        C{transport} is Twisted's TLS over TCP, a plain writer otherwise.
        """
        if self._fast_path and isinstance(transport, TLSMemoryBIOProtocol):
            return TLSLineWriter(transport, self)
        return LineWriter(transport, self)

    def queued(self, writer: LineWriter) -> None:
        """
        Note that C{writer} has lines to write; they go out this turn.
        """
        self._dirty.append(writer)
        if not self._scheduled:
            self._scheduled = True
            self._clock.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Write every queued line now.
        """
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for writer in dirty:
            try:
                writer.flush()
            except Exception:
                # One broken connection must not hold back everyone else's lines.
                self.log.failure("flushing lines to a connection failed")


class LineWriter:
    """
    Queues the lines due to one connection and writes them in one go.

    Without a flusher every line is written at once.
    """

    __slots__ = ("_closed", "_flusher", "_pending", "_transport")

    def __init__(self, transport: ITransport, flusher: TurnFlusher | None = None) -> None:
        self._transport = transport
        self._flusher = flusher
        self._pending: list[bytes] = []
        self._closed = False

    def write(self, line: bytes) -> None:
        """
        Queue C{line} (or, without a flusher, write it now).
        """
        if self._closed:
            return
        if self._flusher is None:
            self._send(line)
            return
        if not self._pending:
            self._flusher.queued(self)
        self._pending.append(line)

    def flush(self) -> None:
        """
        Write the queued lines as one piece of data.
        """
        pending = self._pending
        if pending:
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            self._send(data)

    def close(self) -> None:
        """
        Write what is queued, then close the connection; later lines are dropped.
        """
        self.flush()
        self._closed = True
        self._transport.loseConnection()

    def discard(self) -> None:
        """
        The connection is gone: forget what is queued, accept nothing more.
        """
        self._pending.clear()
        self._closed = True

    def _send(self, data: bytes) -> None:
        self._transport.write(data)


class TLSLineWriter(LineWriter):
    """
    A L{LineWriter} for a L{TLSMemoryBIOProtocol} transport that encrypts
    and sends without going through the wrapper's write methods.

    The OpenSSL handles and the socket's C{send} are looked up once, here;
    every write still checks that neither the TLS wrapper nor the TCP
    transport holds data or state of its own, and leaves the write to them
    when they do.
    """

    __slots__ = ("_bio", "_buffer", "_socket_send", "_ssl", "_tcp", "_view")

    _transport: Any

    def __init__(self, transport: TLSMemoryBIOProtocol, flusher: TurnFlusher) -> None:
        super().__init__(transport, flusher)
        tls: Any = transport
        connection = tls._tlsConnection
        self._tcp = tls.transport
        self._buffer = flusher._cipher_buffer
        self._view = flusher._cipher_view
        self._ssl = connection._ssl if connection is not None else None
        self._bio = connection._from_ssl if connection is not None else None
        self._socket_send = self._tcp.socket.send if isinstance(self._tcp, TCPConnection) else None

    def _send(self, data: bytes) -> None:
        tls = self._transport
        if tls._appSendBuffer and not tls.disconnecting:
            # Earlier data waits in the wrapper for the end of a handshake:
            # this goes after it (the wrapper itself would let it overtake,
            # when written from handshakeCompleted).
            tls._bufferedWrite(data)
            return
        if self._ssl is None or not tls._handshakeDone or tls.disconnecting or tls._lostTLSConnection:
            # The wrapper has state of its own: it does this write, now (not
            # through its per-connection aggregation, which a later fast
            # write could overtake).
            TLSMemoryBIOProtocol.write(tls, data)
            return
        if len(data) <= RECORD_PLAINTEXT:
            if _lib.SSL_write(self._ssl, data, len(data)) <= 0:
                self._refused(data)
                return
            # The ciphertext goes to the socket straight from the buffer.
            size = _lib.BIO_read(self._bio, self._buffer, CIPHER_BUFFER)
            self._send_cipher(self._view[:size])
            if size > BIO_KEEP:
                self._renew_bio()
            return
        pieces: list[bytes] = []
        for start in range(0, len(data), RECORD_PLAINTEXT):
            chunk = data[start : start + RECORD_PLAINTEXT]
            if _lib.SSL_write(self._ssl, chunk, len(chunk)) <= 0:
                self._send_cipher(b"".join(pieces))
                self._refused(data[start:])
                return
            size = _lib.BIO_read(self._bio, self._buffer, CIPHER_BUFFER)
            pieces.append(self._view[:size].tobytes())
        self._send_cipher(b"".join(pieces))
        self._renew_bio()

    def _renew_bio(self) -> None:
        # The old BIO is empty (all read above); SSL_set_bio frees it.
        bio = _lib.BIO_new(_lib.BIO_s_mem())
        if bio == _ffi.NULL:
            return
        connection = self._transport._tlsConnection
        _lib.SSL_set_bio(self._ssl, connection._into_ssl, bio)
        connection._from_ssl = self._bio = bio

    def _refused(self, data: bytes) -> None:
        # Renegotiation, or a broken connection. OpenSSL wrote none of
        # C{data}; the wrapper's path buffers it or reports the error.
        _lib.ERR_clear_error()
        TLSMemoryBIOProtocol.write(self._transport, data)

    def _send_cipher(self, cipher: bytes | memoryview) -> None:
        """
        Send C{cipher} on the socket at once when nothing waits before it;
        what the socket does not take goes through the TCP transport.
        """
        tcp = self._tcp
        sent = 0
        if (
            self._socket_send is not None
            and not tcp.dataBuffer
            and not tcp._tempDataLen
            and tcp.connected
            and not tcp.disconnecting
        ):
            try:
                sent = self._socket_send(cipher)
            except OSError:
                # Full or broken: the transport buffers the data, and meets
                # and reports any error itself.
                sent = 0
        if sent < len(cipher):
            tcp.write(bytes(cipher[sent:]))
