"""A local certificate authority so the embedded profile serves TLS 1.3 with no setup.

On first run a CA (ECDSA P-256: every TLS client supports it, unlike Ed25519
certificates) is generated in ``<data_dir>/tls`` and signs a short-lived leaf for the
configured hostnames. Clients trust the CA explicitly (``curl --cacert ca.pem``); it is
never installed in a system trust store, so a leaked CA key endangers only Strongroom.

Files are replaced atomically (temporary file + rename) so a reader never sees half a
PEM. The leaf's key is renamed into place just before its certificate; a reader that
catches the moment between the two renames loads a mismatched pair, which
``SSLContext.load_cert_chain`` rejects, and simply retries on its next poll. That pair
check is what guarantees a certificate is never served with a key not its own.

When ``tls.cert_file``/``tls.key_file`` are configured the operator owns the
certificates: they are validated, never generated or renewed, and ``TlsPaths.ca_cert``
is ``None`` because the issuing CA is not ours to know (clients use their system trust).
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from strongroom.config import Settings, TlsSettings

log = structlog.get_logger(__name__)

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca-key.pem"
LEAF_CERT_NAME = "server.pem"
LEAF_KEY_NAME = "server-key.pem"
_LOCK_NAME = ".pki.lock"

_DIR_MODE = 0o700
_KEY_MODE = 0o600
# Certificates are public; the directory's 0700 still keeps other users out.
_CERT_MODE = 0o644
# RFC 5280 caps commonName at 64 characters.
_COMMON_NAME_CHARS_MAX = 64


class TlsConfigError(ValueError):
    """Configured certificate files are missing, unreadable or not a matching pair."""


@dataclass(frozen=True)
class TlsPaths:
    """Where the edge finds its certificate chain and key.

    ``ca_cert`` is the local CA clients should trust, or ``None`` when the operator
    configured their own certificate files (issued by a CA we do not hold).
    """

    ca_cert: Path | None
    cert: Path
    key: Path


def tls_paths(settings: Settings) -> TlsPaths:
    """The paths ``ensure_local_pki`` would return, without touching the filesystem."""
    tls = settings.tls
    if tls.cert_file is not None and tls.key_file is not None:
        return TlsPaths(ca_cert=None, cert=tls.cert_file.absolute(), key=tls.key_file.absolute())
    tls_dir = settings.tls_dir.absolute()
    return TlsPaths(
        ca_cert=tls_dir / CA_CERT_NAME,
        cert=tls_dir / LEAF_CERT_NAME,
        key=tls_dir / LEAF_KEY_NAME,
    )


def ensure_local_pki(settings: Settings, *, now: datetime | None = None) -> TlsPaths:
    """Return usable certificate paths, creating the local CA and leaf if needed.

    Idempotent and safe to call from several processes at once (a lock file serialises
    them): a second call finds valid files and changes nothing.
    """
    if _uses_configured_files(settings.tls):
        return _validated_configured_paths(settings.tls)
    moment = _utc(now)
    with _pki_lock(settings.tls_dir):
        ca_cert, ca_key = _load_or_create_ca(settings, moment)
        _renew_leaf_locked(settings, ca_cert, ca_key, moment)
    return tls_paths(settings)


def renew_leaf_if_needed(settings: Settings, *, now: datetime | None = None) -> bool:
    """Reissue the leaf when it nears expiry or its names changed; True when reissued.

    The certificate worker calls this every ``workers.cert_check_interval_s``; edge
    workers notice the new files by their mtime. Configured files are never touched.
    """
    if _uses_configured_files(settings.tls):
        return False
    moment = _utc(now)
    with _pki_lock(settings.tls_dir):
        ca_cert, ca_key = _load_or_create_ca(settings, moment)
        return _renew_leaf_locked(settings, ca_cert, ca_key, moment)


# Pure issuance --------------------------------------------------------------------------


def generate_ca(
    common_name: str, *, validity: timedelta, now: datetime, backdate: timedelta
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA that may sign leaves only (pathlen 0), ECDSA P-256 / SHA-256."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Strongroom"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:_COMMON_NAME_CHARS_MAX]),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    hostnames: Iterable[str],
    *,
    validity: timedelta,
    now: datetime,
    backdate: timedelta,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate for ``hostnames`` (DNS names and IP literals), fresh key.

    Its lifetime never outlasts the CA's, since a chain is only as valid as its root.
    """
    sans = [_general_name(h) for h in dict.fromkeys(hostnames)]
    if not sans:
        raise TlsConfigError("tls.hostnames must name at least one host")
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + validity, ca_cert.not_valid_after_utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Strongroom"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "Strongroom edge"),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def san_names(cert: x509.Certificate) -> frozenset[str]:
    """The DNS names and IP addresses a certificate covers, normalised like the settings."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    dns = ext.get_values_for_type(x509.DNSName)
    ips = ext.get_values_for_type(x509.IPAddress)
    return frozenset([*dns, *(str(ip) for ip in ips)])


def normalised_hostnames(hostnames: Iterable[str]) -> frozenset[str]:
    """Hostnames as they appear in a certificate: IPs canonical, DNS lower-case A-labels."""
    names: set[str] = set()
    for h in hostnames:
        gn = _general_name(h)
        names.add(str(gn.value))
    return frozenset(names)


def leaf_renewal_reason(
    leaf: x509.Certificate,
    leaf_key: ec.EllipticCurvePrivateKey | None,
    ca_cert: x509.Certificate,
    tls: TlsSettings,
    now: datetime,
) -> str | None:
    """Why ``leaf`` must be reissued, or ``None`` when it is still good."""
    if leaf_key is None or leaf.public_key() != leaf_key.public_key():
        return "key-mismatch"
    if leaf.issuer != ca_cert.subject:
        return "other-issuer"
    try:
        leaf.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "other-issuer"
    if leaf.not_valid_before_utc > now:
        return "not-yet-valid"
    if leaf.not_valid_after_utc - now <= timedelta(days=tls.leaf_renew_before_days):
        return "expiring"
    if san_names(leaf) != normalised_hostnames(tls.hostnames):
        return "hostnames-changed"
    return None


# Files ----------------------------------------------------------------------------------


def _uses_configured_files(tls: TlsSettings) -> bool:
    if (tls.cert_file is None) != (tls.key_file is None):
        raise TlsConfigError("tls.cert_file and tls.key_file must be set together")
    return tls.cert_file is not None


def _validated_configured_paths(tls: TlsSettings) -> TlsPaths:
    assert tls.cert_file is not None and tls.key_file is not None
    for setting, path in (("tls.cert_file", tls.cert_file), ("tls.key_file", tls.key_file)):
        if not path.is_file():
            raise TlsConfigError(f"{setting} {path} does not exist or is not a file")
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.load_cert_chain(tls.cert_file, tls.key_file)
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(
            f"cannot load tls.cert_file {tls.cert_file} with tls.key_file {tls.key_file}: {exc}"
        ) from exc
    if tls.key_file.stat().st_mode & 0o077:
        log.warning("tls.key_file_readable_by_others", path=str(tls.key_file))
    return TlsPaths(ca_cert=None, cert=tls.cert_file.absolute(), key=tls.key_file.absolute())


def _load_or_create_ca(
    settings: Settings, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    tls, tls_dir = settings.tls, settings.tls_dir
    loaded = _load_pair(tls_dir / CA_CERT_NAME, tls_dir / CA_KEY_NAME)
    reason: str
    if loaded is None:
        reason = "missing"
    else:
        cert, key = loaded
        if key is None or cert.public_key() != key.public_key():
            reason = "key-mismatch"
        elif cert.not_valid_after_utc - now <= timedelta(days=tls.leaf_renew_before_days):
            # A CA this close to expiry could only sign leaves that expire with it.
            reason = "expiring"
        else:
            return cert, key
    common_name = f"Strongroom Local CA {socket.gethostname()}"
    cert, key = generate_ca(
        common_name,
        validity=timedelta(days=tls.ca_validity_days),
        now=now,
        backdate=timedelta(seconds=tls.not_before_backdate_s),
    )
    _write_pair(tls_dir / CA_CERT_NAME, _cert_pem(cert), tls_dir / CA_KEY_NAME, _key_pem(key))
    log.warning(
        "tls.ca_created",
        reason=reason,
        subject=common_name,
        not_after=cert.not_valid_after_utc.isoformat(),
        path=str(tls_dir / CA_CERT_NAME),
    )
    return cert, key


def _renew_leaf_locked(
    settings: Settings,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: datetime,
) -> bool:
    tls, tls_dir = settings.tls, settings.tls_dir
    cert_path, key_path = tls_dir / LEAF_CERT_NAME, tls_dir / LEAF_KEY_NAME
    loaded = _load_pair(cert_path, key_path)
    reason = "missing" if loaded is None else leaf_renewal_reason(*loaded, ca_cert, tls, now)
    if reason is None:
        return False
    leaf, leaf_key = issue_leaf(
        ca_cert,
        ca_key,
        tls.hostnames,
        validity=timedelta(days=tls.leaf_validity_days),
        now=now,
        backdate=timedelta(seconds=tls.not_before_backdate_s),
    )
    _write_pair(cert_path, _cert_pem(leaf) + _cert_pem(ca_cert), key_path, _key_pem(leaf_key))
    log.info(
        "tls.leaf_issued",
        reason=reason,
        serial=format(leaf.serial_number, "x"),
        not_after=leaf.not_valid_after_utc.isoformat(),
        hostnames=sorted(san_names(leaf)),
    )
    return True


def _load_pair(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | None] | None:
    """The first certificate in ``cert_path`` and its EC key; None if the cert is unusable."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return cert, None
    return cert, key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _write_pair(cert_path: Path, cert_pem: bytes, key_path: Path, key_pem: bytes) -> None:
    """Replace key then certificate, each atomically (see the module docstring for why)."""
    key_tmp = _write_temporary(key_path, key_pem, _KEY_MODE)
    cert_tmp = _write_temporary(cert_path, cert_pem, _CERT_MODE)
    os.replace(key_tmp, key_path)
    os.replace(cert_tmp, cert_path)
    _fsync_dir(cert_path.parent)


def _write_temporary(path: Path, data: bytes, mode: int) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # left by a crash; we hold the PKI lock
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; never widened
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _pki_lock(tls_dir: Path) -> Iterator[None]:
    """Create the TLS directory (0700) and hold an exclusive lock on it."""
    tls_dir.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(tls_dir, _DIR_MODE)
    fd = os.open(tls_dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, _KEY_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _general_name(hostname: str) -> x509.GeneralName:
    name = hostname.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    name = name.rstrip(".").lower()
    if not name:
        raise TlsConfigError(f"tls.hostnames has an empty name: {hostname!r}")
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise TlsConfigError(f"tls.hostnames has an invalid name: {hostname!r}") from exc
    return x509.DNSName(ascii_name)


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)
