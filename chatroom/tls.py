"""
TLS for the daemon: a local CA for first runs, and a reloadable context.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import service_identity
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from service_identity.cryptography import verify_certificate_hostname, verify_certificate_ip_address
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.internet.ssl import CertificateOptions, TLSVersion
from zope.interface import implementer

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca-key.pem"
SERVER_CERT_NAME = "server.pem"
SERVER_KEY_NAME = "server-key.pem"


class CertificateError(Exception):
    """
    A certificate or key cannot be used; the message says which and why.
    """


def _write_private(path: Path, data: bytes) -> None:
    # Created with mode 0600 from the start, so the key is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# The names every generated certificate is for, so that a client on the
# daemon's own machine always works.
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# X.509 caps a common name at 64 characters; the SAN holds the long ones.
_MAX_COMMON_NAME = 64


def san_entry(name: str) -> x509.GeneralName:
    """
    The subject alternative name for C{name}: an IP address (v4 or v6) or
    a DNS host name (international names in their IDNA form).

    @raise ValueError: If C{name} is neither, with the reason.
    """
    text = name.strip().rstrip(".")
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        ascii_name = text.encode("idna").decode("ascii").lower()
    except UnicodeError as e:
        raise ValueError(f"{name!r} is not a host name or an IP address ({e})") from None
    labels = ascii_name.split(".")
    if not ascii_name or len(ascii_name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            f"{name!r} is not a host name or an IP address (letters, digits and '-' between dots)"
        )
    return x509.DNSName(ascii_name)


def _san_value(entry: x509.GeneralName) -> str:
    return str(entry.value)


def create_local_ca(directory: Path, now: datetime.datetime, hostnames: Iterable[str] = ()) -> Path:
    """
    Create a CA and a server certificate in C{directory}; return the path
    of the CA certificate.

    The certificate is for C{hostnames} (host names and IP addresses, the
    first of them also its common name) and always for C{localhost},
    C{127.0.0.1} and C{::1}.

    @raise ValueError: If one of C{hostnames} is not a host name or an IP
        address; nothing is written then.
    """
    names: list[x509.GeneralName] = []
    for name in (*hostnames, *LOCAL_NAMES):
        entry = san_entry(name)
        if entry not in names:
            names.append(entry)
    common_name = next(v for v in map(_san_value, names) if len(v) <= _MAX_COMMON_NAME)
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chatroom local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(directory / CA_KEY_NAME, _key_pem(ca_key))
    _write_private(directory / SERVER_KEY_NAME, _key_pem(server_key))
    (directory / SERVER_CERT_NAME).write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    ca_path = directory / CA_CERT_NAME
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return ca_path


def missing_names(cert_path: Path, hostnames: Iterable[str]) -> list[str]:
    """
    Which of C{hostnames} the certificate in C{cert_path} is not for (its
    subject alternative names), say to tell that a certificate made before
    a name was added must be made again.

    @raise CertificateError: If the certificate cannot be read.
    @raise ValueError: If one of C{hostnames} is not a host name or an IP address.
    """
    pem = _read(cert_path, "certificate")
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise CertificateError(f"the certificate {cert_path} cannot be read: {e}") from e
    try:
        present = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return list(hostnames)
    return [name for name in hostnames if san_entry(name) not in present]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise CertificateError(f"cannot read the {what} {path}: {e.strerror}") from e


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _check_host(certificate: x509.Certificate, host: str) -> None:
    """
    @raise service_identity.VerificationError: If C{certificate}'s subject
        alternative names do not cover C{host} (a DNS name or an address).
    @raise service_identity.CertificateError: If it has none.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        verify_certificate_hostname(certificate, host)
    else:
        verify_certificate_ip_address(certificate, host)


def check_certificate(
    certificate: x509.Certificate,
    key: PrivateKeyTypes,
    cert_path: Path,
    key_path: Path,
    hosts: Sequence[str] = (),
    now: datetime.datetime | None = None,
) -> None:
    """
    Check that clients can use C{certificate}: it is valid at C{now}, C{key}
    is its private key, and it names every one of C{hosts}.

    @param key: The private key loaded from C{key_path}.
    @param hosts: The host names and addresses clients reach the daemon
        by; none means no host check.
    @param now: The time to check validity at; default the current time.
    @raise CertificateError: If a check fails; the message names the file.
    """
    now = _utc_now() if now is None else now
    used = f"the certificate {cert_path} cannot be used"
    if now < certificate.not_valid_before_utc:
        raise CertificateError(f"{used}: it is not valid before {_stamp(certificate.not_valid_before_utc)}")
    if now > certificate.not_valid_after_utc:
        raise CertificateError(f"{used}: it expired on {_stamp(certificate.not_valid_after_utc)}")
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
        raise CertificateError(f"{used} with the key {key_path}: the key does not belong to the certificate")
    for host in hosts:
        try:
            _check_host(certificate, host)
        except (service_identity.VerificationError, service_identity.CertificateError) as e:
            names = _alternative_names(certificate)
            raise CertificateError(
                f"{used}: it is not for {host} (it is for {names or 'no host name'})"
            ) from e


def _alternative_names(certificate: x509.Certificate) -> str:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ""
    names = extension.value
    found = [*names.get_values_for_type(x509.DNSName)]
    found += [str(address) for address in names.get_values_for_type(x509.IPAddress)]
    return ", ".join(found)


def load_server_options(
    cert_path: Path, key_path: Path, hosts: Sequence[str] = (), now: datetime.datetime | None = None
) -> CertificateOptions:
    """
    TLS options for the server: TLS 1.2 at least, TLS 1.3 offered.

    @param hosts: The names and addresses the certificate must cover (see
        L{check_certificate}); none means no host check.
    @param now: The time to check validity at; default the current time.
    @raise CertificateError: If a file is missing, unreadable or not a
        matching certificate and key, or the certificate is expired, not
        yet valid, or not for one of C{hosts}.
    """
    cert_pem = _read(cert_path, "certificate")
    key_pem = _read(key_path, "private key")
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except Exception as e:
        raise CertificateError(f"the certificate {cert_path} and key {key_path} cannot be used: {e}") from e
    # A certificate clients would refuse is refused here, so that a reload
    # keeps the old one instead of failing every new client.
    check_certificate(certificate, key, cert_path, key_path, hosts, now)
    try:
        # Twisted's defaults (ciphers, curves) for the context; the
        # certificate goes in as cryptography objects, as pyOpenSSL prefers.
        options = CertificateOptions(raiseMinimumTo=TLSVersion.TLSv1_2)
        context = options.getContext()
        context.use_certificate(certificate)
        context.use_privatekey(key)  # type: ignore[arg-type]
        context.check_privatekey()
    except Exception as e:
        raise CertificateError(f"the certificate {cert_path} and key {key_path} cannot be used: {e}") from e
    # Lets OpenSSL free an idle connection's buffers: less memory per client.
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    return options


@implementer(IOpenSSLContextFactory)
class ServerTLS:
    """
    The listening port's context factory; L{reload} swaps the certificate
    for new connections without touching established ones.
    """

    def __init__(
        self,
        cert_path: Path,
        key_path: Path,
        hosts: Sequence[str] = (),
        now: Callable[[], datetime.datetime] = _utc_now,
    ) -> None:
        """
        @param hosts: The host names and addresses clients reach the daemon
            by: the certificate must cover each (none: no host check).
        @param now: The current time, for the validity check.
        @raise CertificateError: If the certificate and key cannot be used
            (see L{load_server_options}).
        """
        self.cert_path = cert_path
        self.key_path = key_path
        self.hosts = tuple(hosts)
        self.now = now
        self._options = load_server_options(cert_path, key_path, self.hosts, now())

    def reload(self) -> None:
        """
        Load the certificate and key again, with the same checks as at start.

        @raise CertificateError: If they are broken, expired, not yet valid,
            do not match, or are not for one of the hosts; the old ones stay
            in use.
        """
        self._options = load_server_options(self.cert_path, self.key_path, self.hosts, self.now())

    def getContext(self) -> SSL.Context:
        return self._options.getContext()
