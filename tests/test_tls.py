"""
TLS in memory: the server's context and a verifying client, through iosim.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.protocols.basic import LineReceiver
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect

from chatroom.tls import (
    CertificateError,
    ServerTLS,
    create_local_ca,
    load_server_options,
    missing_names,
    san_entry,
)
from chatroom.wire import parse_line
from tests.helpers import make_room

NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    create_local_ca(directory, NOW)
    return directory


class Collector(LineReceiver):
    delimiter = b"\r\n"

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.lost: Failure | None = None

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = reason


def tls_pair(certs: Path, hostname: str) -> tuple[Collector, IOPump, object]:
    # One clock drives the room and both TLS layers, which hold small writes
    # until the end of the reactor turn; pumping advances it.
    room, clock, chat_factory = make_room()
    server_factory = TLSMemoryBIOFactory(
        ServerTLS(certs / "server.pem", certs / "server-key.pem"), False, chat_factory, clock
    )
    client = Collector()
    trust = Certificate.loadPEM((certs / "ca.pem").read_bytes())
    client_factory = TLSMemoryBIOFactory(
        optionsForClientTLS(hostname, trustRoot=trust), True, Factory.forProtocol(lambda: client), clock
    )
    server_address = IPv4Address("TCP", "127.0.0.1", 6697)
    client_address = IPv4Address("TCP", "127.0.0.1", 50001)
    server = server_factory.buildProtocol(client_address)
    client_wrapper = client_factory.buildProtocol(server_address)
    pump = connect(
        server,
        FakeTransport(server, True, hostAddress=server_address, peerAddress=client_address),
        client_wrapper,
        FakeTransport(client_wrapper, False, hostAddress=client_address, peerAddress=server_address),
        clock=clock,
    )
    return client, pump, room


def test_verified_client_joins_and_chats(certs: Path) -> None:
    client, pump, _room = tls_pair(certs, "localhost")
    pump.flush()
    kinds = [parse_line(line).kind for line in client.lines]
    assert kinds == ["welcome", "join", "list"]
    client.sendLine(b"hello over TLS")
    pump.flush()
    last = parse_line(client.lines[-1])
    assert (last.kind, last.source, last.text) == ("message", "guest1", "hello over TLS")


def test_wrong_host_name_fails_and_nobody_is_told(certs: Path) -> None:
    client, pump, room = tls_pair(certs, "example.com")
    pump.flush()
    assert client.lines == []
    assert client.lost is not None
    assert len(room.members) == 0  # type: ignore[attr-defined]


def test_tls13_is_negotiated(certs: Path) -> None:
    client, pump, _ = tls_pair(certs, "localhost")
    pump.flush()
    assert client.transport.getHandle().get_protocol_version_name() == "TLSv1.3"


def test_release_buffers_mode_is_set(certs: Path) -> None:
    context = ServerTLS(certs / "server.pem", certs / "server-key.pem").getContext()
    # set_mode returns the mode now in force; adding nothing reads it.
    assert context.set_mode(0) & SSL.MODE_RELEASE_BUFFERS


def test_missing_or_mismatched_files_are_clear_errors(certs: Path, tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="cannot read the certificate"):
        load_server_options(tmp_path / "nope.pem", certs / "server-key.pem")
    with pytest.raises(CertificateError, match="cannot be used"):
        load_server_options(certs / "server.pem", certs / "ca-key.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(CertificateError, match="cannot be used"):
        load_server_options(garbage, certs / "server-key.pem")


def test_reload_keeps_the_old_context_when_the_new_one_is_broken(certs: Path, tmp_path: Path) -> None:
    cert = tmp_path / "server.pem"
    key = tmp_path / "server-key.pem"
    cert.write_bytes((certs / "server.pem").read_bytes())
    key.write_bytes((certs / "server-key.pem").read_bytes())
    tls = ServerTLS(cert, key)
    before = tls.getContext()
    cert.write_text("broken")
    with pytest.raises(CertificateError):
        tls.reload()
    assert tls.getContext() is before


def test_generated_keys_are_private(certs: Path) -> None:
    for name in ("ca-key.pem", "server-key.pem"):
        assert (certs / name).stat().st_mode & 0o077 == 0


# Issue 12, item 11: a certificate clients would refuse is refused at start
# and by a reload (SIGHUP), which then keeps the old one.


def local_ca(directory: Path, now: datetime.datetime) -> tuple[Path, Path]:
    create_local_ca(directory, now)
    return directory / "server.pem", directory / "server-key.pem"


def copy_into(source: tuple[Path, Path], cert: Path, key: Path) -> None:
    cert.write_bytes(source[0].read_bytes())
    key.write_bytes(source[1].read_bytes())


@pytest.mark.parametrize(
    ("made", "why"),
    [
        (
            NOW - datetime.timedelta(days=826),
            r"cannot be used: it expired on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC",
        ),
        (NOW + datetime.timedelta(days=1), r"cannot be used: it is not valid before \d{4}-"),
    ],
)
def test_a_reload_refuses_a_certificate_out_of_its_validity(
    certs: Path, tmp_path: Path, made: datetime.datetime, why: str
) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server-key.pem"
    copy_into((certs / "server.pem", certs / "server-key.pem"), cert, key)
    tls = ServerTLS(cert, key)
    before = tls.getContext()
    copy_into(local_ca(tmp_path / "other", made), cert, key)
    with pytest.raises(CertificateError, match=rf"the certificate {cert} {why}"):
        tls.reload()
    assert tls.getContext() is before
    # And at start.
    with pytest.raises(CertificateError, match=why):
        ServerTLS(cert, key)


def test_a_certificate_is_checked_at_the_time_of_the_reload(certs: Path) -> None:
    now = [NOW]
    tls = ServerTLS(certs / "server.pem", certs / "server-key.pem", now=lambda: now[0])
    before = tls.getContext()
    now[0] = NOW + datetime.timedelta(days=826)
    with pytest.raises(CertificateError, match="expired on"):
        tls.reload()
    assert tls.getContext() is before


def test_a_key_of_another_certificate_is_refused_clearly(certs: Path, tmp_path: Path) -> None:
    other_cert, other_key = local_ca(tmp_path, NOW)
    with pytest.raises(
        CertificateError, match=r"with the key .*: the key does not belong to the certificate"
    ):
        ServerTLS(certs / "server.pem", other_key)
    cert, key = tmp_path / "copy.pem", tmp_path / "copy-key.pem"
    copy_into((certs / "server.pem", certs / "server-key.pem"), cert, key)
    tls = ServerTLS(cert, key)
    before = tls.getContext()
    key.write_bytes(other_key.read_bytes())
    with pytest.raises(CertificateError, match="does not belong"):
        tls.reload()
    assert tls.getContext() is before
    assert other_cert.exists()


def test_the_certificate_must_cover_the_configured_hosts(certs: Path, tmp_path: Path) -> None:
    cert, key = certs / "server.pem", certs / "server-key.pem"
    # No hosts configured: no host check, as before.
    ServerTLS(cert, key)
    ServerTLS(cert, key, hosts=("localhost", "LOCALHOST", "127.0.0.1", "::1"))
    for host in ("chat.example.org", "192.0.2.1", "::2", "local"):
        with pytest.raises(
            CertificateError,
            match=rf"cannot be used: it is not for {host} \(it is for localhost, 127.0.0.1, ::1\)",
        ):
            ServerTLS(cert, key, hosts=("localhost", host))
    copied, copied_key = tmp_path / "server.pem", tmp_path / "server-key.pem"
    copy_into((cert, key), copied, copied_key)
    tls = ServerTLS(copied, copied_key, hosts=["localhost"])
    before = tls.getContext()
    copied.write_bytes((certs / "ca.pem").read_bytes())
    copied_key.write_bytes((certs / "ca-key.pem").read_bytes())
    # The CA's own certificate matches its key and is valid, but names no host.
    with pytest.raises(CertificateError, match=r"it is not for localhost \(it is for no host name\)"):
        tls.reload()
    assert tls.getContext() is before


def test_extra_host_names_and_addresses_go_into_the_certificate(tmp_path: Path) -> None:
    extra = ["chat.example.org", "192.0.2.7", "2001:DB8::1", "Bücher.example", "localhost"]
    create_local_ca(tmp_path, NOW, extra)
    cert = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["chat.example.org", "xn--bcher-kva.example", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address(a) for a in ("192.0.2.7", "2001:db8::1", "127.0.0.1", "::1")
    ]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "chat.example.org"
    assert missing_names(tmp_path / "server.pem", extra) == []
    assert missing_names(tmp_path / "server.pem", ["other.example.org", "192.0.2.7"]) == ["other.example.org"]
    # A client that asks for one of the names verifies the server.
    for hostname in ("chat.example.org", "192.0.2.7"):
        client, pump, _ = tls_pair(tmp_path, hostname)
        pump.flush()
        assert [parse_line(line).kind for line in client.lines] == ["welcome", "join", "list"]
    client, pump, _ = tls_pair(tmp_path, "other.example.org")
    pump.flush()
    assert client.lines == [] and client.lost is not None


def test_the_default_certificate_is_for_this_machine_only(certs: Path) -> None:
    cert = x509.load_pem_x509_certificate((certs / "server.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(v.value) for v in san] == ["localhost", "127.0.0.1", "::1"]
    assert missing_names(certs / "server.pem", ["chat.example.org"]) == ["chat.example.org"]


@pytest.mark.parametrize(
    "name", ["", "exa mple.org", "*.example.org", "-bad.example", "a" * 64 + ".org", "x_y.org"]
)
def test_a_bad_host_name_is_refused_before_anything_is_written(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a host name or an IP address"):
        create_local_ca(tmp_path / "certs", NOW, [name])
    assert not (tmp_path / "certs").exists()


def test_a_long_host_name_is_in_the_san_but_not_the_common_name(tmp_path: Path) -> None:
    long_name = ".".join(["a" * 60] * 3)
    assert isinstance(san_entry(long_name), x509.DNSName)
    create_local_ca(tmp_path, NOW, [long_name])
    cert = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"
    assert long_name in cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
