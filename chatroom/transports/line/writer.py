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

The fast path uses private names of pyOpenSSL and Twisted (setup.py bounds
both versions). L{fast_path_problem} looks every one of them up once, on
real objects, when the L{TurnFlusher} is made; if one is missing, every
connection writes through Twisted's public path instead, and the log says
why. Should a fast write still raise, that connection goes on through the
public path, with its data, and the failure is logged.
"""

from __future__ import annotations

import socket
from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import IReactorTime, ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.tcp import Connection as TCPConnection
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

# Plaintext per TLS record, the most TLS allows; its ciphertext always fits
# the read buffer.
RECORD_PLAINTEXT = 2**14
CIPHER_BUFFER = 2**15
# OpenSSL's memory BIO keeps its buffer at the largest size it ever held:
# after writing more than this at once, a connection gets a new, empty BIO,
# so idle connections do not each keep a 20 KiB buffer from a past burst.
BIO_KEEP = 2**12

# pyOpenSSL's cffi bindings, used directly on the hot path: one C call per
# step instead of several Python calls. Private: fast_path_problem checks them.
_lib: Any = getattr(SSL, "_lib", None)
_ffi: Any = getattr(SSL, "_ffi", None)
_LIB_FUNCTIONS = ("SSL_write", "SSL_set_bio", "BIO_new", "BIO_s_mem", "BIO_read", "ERR_clear_error")
_FFI_NAMES = ("new", "buffer", "NULL")
# The private state of Twisted's TLS wrapper the fast path reads (class
# defaults; the per-connection ones are checked on a probe connection).
_TLS_CLASS_NAMES = ("_handshakeDone", "_lostTLSConnection", "_bufferedWrite", "disconnecting")


def fast_path_problem() -> str | None:
    """
    Why L{TLSLineWriter} cannot run on the installed pyOpenSSL and Twisted,
    or L{None} when it can.

    Every private name the fast path uses is looked up here: pyOpenSSL's
    cffi functions, and the attributes of a probe connection (Twisted's TLS
    wrapper, server side, on a TCP transport over a socket pair that never
    carries a byte), with the values a new connection has.
    """
    try:
        return _probe()
    except Exception as e:
        return f"the probe connection failed: {e!r}"


def _probe() -> str | None:
    missing = [f"OpenSSL.SSL._lib.{n}" for n in _LIB_FUNCTIONS if not callable(getattr(_lib, n, None))]
    missing += [f"OpenSSL.SSL._ffi.{n}" for n in _FFI_NAMES if not hasattr(_ffi, n)]
    missing += [f"TLSMemoryBIOProtocol.{n}" for n in _TLS_CLASS_NAMES if not hasattr(TLSMemoryBIOProtocol, n)]
    if missing:
        return "missing: " + ", ".join(missing)
    left, right = socket.socketpair()
    try:
        clock: Any = _ProbeClock()
        tcp = TCPConnection(left, Protocol(), reactor=clock)
        factory = TLSMemoryBIOFactory(CertificateOptions(), False, Factory.forProtocol(Protocol), clock)
        tls: Any = factory.buildProtocol(None)
        tls.makeConnection(tcp)
        connection: Any = getattr(tls, "_tlsConnection", None)
        expected: list[tuple[str, Any, Any]] = [
            ("TLSMemoryBIOProtocol._tlsConnection", isinstance(connection, SSL.Connection), True),
            ("TLSMemoryBIOProtocol._appSendBuffer", getattr(tls, "_appSendBuffer", None), []),
            ("TLSMemoryBIOProtocol._handshakeDone", tls._handshakeDone, False),
            ("TLSMemoryBIOProtocol._lostTLSConnection", tls._lostTLSConnection, False),
            ("TLSMemoryBIOProtocol.transport", tls.transport is tcp, True),
            ("tcp.Connection.dataBuffer", getattr(tcp, "dataBuffer", None), b""),
            ("tcp.Connection._tempDataLen", getattr(tcp, "_tempDataLen", None), 0),
            ("tcp.Connection.connected", getattr(tcp, "connected", None) in (0, 1, False, True), True),
            ("tcp.Connection.disconnecting", getattr(tcp, "disconnecting", None), 0),
            ("tcp.Connection.getHandle()", tcp.getHandle() is left, True),
        ]
        for name in ("_ssl", "_from_ssl", "_into_ssl"):
            expected.append((f"OpenSSL.SSL.Connection.{name}", hasattr(connection, name), True))
        wrong = [name for name, value, want in expected if value is not want and value != want]
        if wrong:
            return "unexpected: " + ", ".join(wrong)
        # A write before the handshake: OpenSSL refuses it, and the BIO is empty.
        if _lib.SSL_write(connection._ssl, b"x", 1) > 0:
            return "SSL_write took data before the handshake"
        _lib.ERR_clear_error()
        buffer = _ffi.new("char[]", 16)
        if _lib.BIO_read(connection._from_ssl, buffer, 16) > 0:
            return "BIO_read found data before the handshake"
    finally:
        left.close()
        right.close()
    return None


class _ProbeClock:
    """
    The probe connection's reactor: it is never asked to do anything.
    """

    def seconds(self) -> float:
        return 0.0

    def callLater(self, delay: float, f: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the probe connection scheduled a call")


class TurnFlusher:
    """
    Writes every connection's queued lines once per reactor turn.

    @ivar fast_path: Whether TLS connections get L{TLSLineWriter}.
    @ivar _dirty: The writers with lines queued since the last flush.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, fast_path: bool = True) -> None:
        """
        @param fast_path: Whether TLS connections may use L{TLSLineWriter}
            (if L{fast_path_problem} finds nothing wrong); without it every
            connection writes through its transport's public C{write}.
        """
        self._clock = clock
        self._dirty: list[LineWriter] = []
        self._scheduled = False
        self.fast_path = False
        if not fast_path:
            self.log.info("TLS writes: Twisted's public path (the fast path is turned off)")
        elif (problem := fast_path_problem()) is not None:
            self.log.warn(
                "TLS writes: Twisted's public path; the fast path cannot run: {problem}", problem=problem
            )
        else:
            self.fast_path = True
            self.log.info("TLS writes: the fast path")
        # Shared by every TLS writer: ciphertext goes out before the next write.
        self._cipher_buffer: Any = _ffi.new("char[]", CIPHER_BUFFER) if self.fast_path else None
        self._cipher_view: Any = memoryview(_ffi.buffer(self._cipher_buffer)) if self.fast_path else None

    def writer(self, transport: ITransport) -> LineWriter:
        """
        A writer for one connection's C{transport}: the TLS fast path when
        C{transport} is Twisted's TLS over TCP, a plain writer otherwise.
        """
        if self.fast_path and isinstance(transport, TLSMemoryBIOProtocol):
            try:
                return TLSLineWriter(transport, self)
            except Exception:
                self.fast_path_failed()
        return LineWriter(transport, self)

    def fast_path_failed(self) -> None:
        """
        A TLS writer's fast path raised (called in the C{except} block): that
        connection and every later one write through Twisted's public path.
        Logged once.
        """
        if self.fast_path:
            self.fast_path = False
            self.log.failure("the TLS fast path failed; connections write through Twisted's public path")

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
                # One broken connection must not hold back everyone else's
                # lines. (A TLS writer gets here only when Twisted's own
                # write raised: its fast path hands over instead of raising.)
                self.log.failure("writing to a connection failed; its lines of this turn may be lost")


class LineWriter:
    """
    Queues the lines due to one connection and writes them in one go.

    Without a flusher every line is written at once.

    @ivar pending: The lines queued this turn. While it is not empty the
        writer is open and due to be flushed, so appending to it is
        writing (the delivery path does, sparing a call per line).
    """

    __slots__ = ("_closed", "_flusher", "_transport", "pending")

    def __init__(self, transport: ITransport, flusher: TurnFlusher | None = None) -> None:
        self._transport = transport
        self._flusher = flusher
        self.pending: list[bytes] = []
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
        if not self.pending:
            self._flusher.queued(self)
        self.pending.append(line)

    def flush(self) -> None:
        """
        Write the queued lines as one piece of data.
        """
        pending = self.pending
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
        self.pending.clear()
        self._closed = True

    def _send(self, data: bytes) -> None:
        self._transport.write(data)


# Where a TLS writer's write goes (worked out in TLSLineWriter._send).
_PUBLIC, _BUFFER, _WRAPPER, _ENCRYPT, _DIRECT = range(5)


class TLSLineWriter(LineWriter):
    """
    A L{LineWriter} for a L{TLSMemoryBIOProtocol} transport that encrypts
    and sends without going through the wrapper's write methods.

    The OpenSSL handles and the socket's C{send} are looked up once, here;
    every write still checks that neither the TLS wrapper nor the TCP
    transport holds data or state of its own, and leaves the write to them
    when they do. Those checks read all the private state there is, before
    OpenSSL takes any data: should one raise, the data goes through the
    wrapper's public C{write} instead, and so does every later write of
    this connection.

    @ivar _fast: False once a check raised.
    """

    __slots__ = ("_bio", "_buffer", "_connection", "_fast", "_socket_send", "_ssl", "_tcp", "_view")

    _transport: Any
    _flusher: TurnFlusher

    def __init__(self, transport: TLSMemoryBIOProtocol, flusher: TurnFlusher) -> None:
        super().__init__(transport, flusher)
        tls: Any = transport
        connection = self._connection = tls._tlsConnection
        self._tcp = tls.transport
        self._buffer = flusher._cipher_buffer
        self._view = flusher._cipher_view
        self._ssl = connection._ssl if connection is not None else None
        self._bio = connection._from_ssl if connection is not None else None
        self._socket_send: Any = self._tcp.getHandle().send if isinstance(self._tcp, TCPConnection) else None
        self._fast = True

    def _send(self, data: bytes) -> None:
        # Where the write goes: to the wrapper (_BUFFER, _WRAPPER) when it
        # or the TCP transport holds state of its own, else through OpenSSL
        # straight to the socket (_DIRECT) or, for a transport other than
        # TCP, to the transport's write (_ENCRYPT). Worked out here, not in
        # a method of its own: this runs once per connection per turn.
        route = _PUBLIC
        if self._fast:
            try:
                tls = self._transport
                tcp = self._tcp
                if tls._appSendBuffer and not tls.disconnecting:
                    route = _BUFFER
                elif (
                    self._ssl is None or not tls._handshakeDone or tls.disconnecting or tls._lostTLSConnection
                ):
                    route = _WRAPPER
                elif (
                    self._socket_send is not None
                    and not tcp.dataBuffer
                    and not tcp._tempDataLen
                    and tcp.connected
                    and not tcp.disconnecting
                ):
                    route = _DIRECT
                else:
                    route = _ENCRYPT
            except Exception:
                route = _PUBLIC
                self._fast = False
                self._flusher.fast_path_failed()
        if route >= _ENCRYPT:
            self._encrypt(data, route == _DIRECT)
        elif route == _BUFFER:
            # Earlier data waits in the wrapper for the end of a handshake:
            # this goes after it (the wrapper itself would let it overtake,
            # when written from handshakeCompleted).
            self._transport._bufferedWrite(data)
        elif route == _WRAPPER:
            # The wrapper has state of its own: it does this write, now (not
            # through its per-connection aggregation, which a later fast
            # write could overtake).
            TLSMemoryBIOProtocol.write(self._transport, data)
        else:
            self._transport.write(data)

    def _encrypt(self, data: bytes, direct: bool) -> None:
        """
        Encrypt C{data} and send it: on the socket at once if C{direct}.
        Only OpenSSL's functions and the TCP transport's public C{write}
        are used here: once OpenSSL has taken data, its ciphertext goes out.
        """
        if len(data) <= RECORD_PLAINTEXT:
            if _lib.SSL_write(self._ssl, data, len(data)) <= 0:
                self._refused(data)
                return
            # The ciphertext goes to the socket straight from the buffer.
            size = _lib.BIO_read(self._bio, self._buffer, CIPHER_BUFFER)
            self._send_cipher(self._view[:size], direct)
            if size > BIO_KEEP:
                self._renew_bio()
            return
        pieces: list[bytes] = []
        for start in range(0, len(data), RECORD_PLAINTEXT):
            chunk = data[start : start + RECORD_PLAINTEXT]
            if _lib.SSL_write(self._ssl, chunk, len(chunk)) <= 0:
                self._send_cipher(b"".join(pieces), direct)
                self._refused(data[start:])
                return
            size = _lib.BIO_read(self._bio, self._buffer, CIPHER_BUFFER)
            pieces.append(self._view[:size].tobytes())
        self._send_cipher(b"".join(pieces), direct)
        self._renew_bio()

    def _renew_bio(self) -> None:
        # The old BIO is empty (all read above); SSL_set_bio frees it.
        bio = _lib.BIO_new(_lib.BIO_s_mem())
        if bio == _ffi.NULL:
            return
        connection = self._connection
        _lib.SSL_set_bio(self._ssl, connection._into_ssl, bio)
        connection._from_ssl = self._bio = bio

    def _refused(self, data: bytes) -> None:
        # Renegotiation, or a broken connection. OpenSSL wrote none of
        # C{data}; the wrapper's path buffers it or reports the error.
        _lib.ERR_clear_error()
        TLSMemoryBIOProtocol.write(self._transport, data)

    def _send_cipher(self, cipher: bytes | memoryview, direct: bool) -> None:
        """
        Send C{cipher} on the socket at once if C{direct} (nothing waits
        before it); what the socket does not take goes through the TCP
        transport.
        """
        sent = 0
        if direct:
            try:
                sent = self._socket_send(cipher)
            except OSError:
                # Full or broken: the transport buffers the data, and meets
                # and reports any error itself.
                sent = 0
        if sent < len(cipher):
            self._tcp.write(bytes(cipher[sent:]))
