"""TLS 1.3-only contexts for the edge, and certificate reload without restarting.

Why TLS 1.3 only (Mozilla's "modern" profile): it has no renegotiation, no RSA key
exchange, no CBC suites and a one-round-trip handshake; every client Strongroom serves
(current browsers, curl, SDKs) speaks it. Its three cipher suites are fixed by OpenSSL
(AES-256-GCM, ChaCha20-Poly1305, AES-128-GCM, exactly Mozilla's list) and the client's
preference decides among them, so devices without AES hardware pick ChaCha20.

Key-exchange groups: Python 3.11 offers only ``set_ecdh_curve``, which narrows the
server to ONE group (measured: with ``prime256v1`` an X25519-only client fails the
handshake and an X25519-first client pays a HelloRetryRequest round trip). So it is
not called, and OpenSSL 3.0's defaults apply: x25519, secp256r1, x448, secp521r1,
secp384r1, ffdhe2048-8192. That is Mozilla's X25519/P-256/P-384 plus groups that are
slower but not weaker; the client's key share (X25519 for every mainstream client)
is used. An operator needing the exact list (sslyze then reports Mozilla "modern"
compliance, see ADR 0004) sets ``Groups`` in an ``OPENSSL_CONF``
system_default section for the edge processes.

0-RTT early data stays off (OpenSSL's default): replayable requests have no place in
a payments API.

Reload: an edge listener is created once with ``ReloadingContext.context``; its SNI
callback runs early in every handshake (OpenSSL calls it even when the client sends no
server name, as for an IP address) and moves the handshake onto the newest context,
so new connections get a renewed certificate while established ones keep theirs.
Session tickets stay valid across reloads: OpenSSL encrypts them with the keys of the
context the connection was created from, which is the stable outer one.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import structlog
from cryptography import x509

log = structlog.get_logger(__name__)

ALPN_PROTOCOLS = ["http/1.1"]
# OpenSSL's default: a client opening parallel connections can resume two of them
# without a full handshake (≈ 0.25-0.5 ms CPU each), and minting tickets is cheap.
SESSION_TICKETS_PER_HANDSHAKE = 2

_FileSignature = tuple[int, int, int, int] | None


# Mozilla "modern": X25519, P-256, P-384 only. Python's ssl module can set a single
# curve, not a group list, so the list reaches OpenSSL through its config file, which
# must be in the environment before the edge process starts (`edge_openssl_env`).
MODERN_GROUPS = "X25519:P-256:P-384"
OPENSSL_CONF_TEXT = f"""# Written by Strongroom for edge workers: Mozilla "modern" TLS groups.
openssl_conf = strongroom_conf

[strongroom_conf]
ssl_conf = strongroom_ssl

[strongroom_ssl]
system_default = strongroom_tls

[strongroom_tls]
MinProtocol = TLSv1.3
Groups = {MODERN_GROUPS}
"""


def edge_openssl_env(directory: Path) -> dict[str, str]:
    """Write the edge's OpenSSL config into `directory`; the env var that selects it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "openssl-edge.cnf"
    if not path.exists() or path.read_text() != OPENSSL_CONF_TEXT:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(OPENSSL_CONF_TEXT)
        tmp.replace(path)
    return {"OPENSSL_CONF": str(path)}


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.3-only server context serving ``cert`` (leaf first, then chain) with ``key``.

    Raises ``ssl.SSLError`` or ``OSError`` when the files are unreadable or not a pair.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    # Mozilla modern: the client picks the suite (ChaCha20 on phones, AES where hardware helps).
    ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options &= ~ssl.OP_NO_TICKET
    ctx.num_tickets = SESSION_TICKETS_PER_HANDSHAKE
    ctx.verify_mode = ssl.CERT_NONE  # clients authenticate with OAuth tokens, not certificates
    ctx.set_alpn_protocols(ALPN_PROTOCOLS)
    ctx.load_cert_chain(cert, key)
    return ctx


def client_context(ca_cert: Path | None) -> ssl.SSLContext:
    """A TLS 1.3 client context for tests, benchmarks and health checks.

    It trusts only ``ca_cert`` (the local CA), or the system's roots when ``None``
    (configured certificates), and checks hostnames under strict X.509 rules.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if ca_cert is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        ctx.load_verify_locations(cafile=ca_cert)
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.set_alpn_protocols(ALPN_PROTOCOLS)
    return ctx


class ReloadingContext:
    """The edge's server context, swapping in a renewed certificate for new handshakes.

    ``maybe_reload`` costs two ``stat`` calls when nothing changed, so the edge calls
    it every ``edge.reload_poll_s``. A file that does not load (corrupt, or a key and
    certificate caught between their two renames) keeps the current certificate; the
    error is logged once per distinct file state and loading is retried when the files
    change again.
    """

    __slots__ = ("_cert", "_current", "_failed", "_key", "_outer", "_signature")

    def __init__(self, cert: Path, key: Path) -> None:
        self._cert = cert
        self._key = key
        self._signature = self._stat()
        self._failed: tuple[_FileSignature, _FileSignature] | None = None
        self._outer = server_context(cert, key)
        self._current = self._outer
        self._outer.sni_callback = self._select_context

    @property
    def context(self) -> ssl.SSLContext:
        """The stable context to give ``loop.create_server(ssl=...)``, once."""
        return self._outer

    @property
    def current(self) -> ssl.SSLContext:
        """The context new handshakes are moved to (the newest that loaded)."""
        return self._current

    def maybe_reload(self) -> bool:
        """Load the certificate files if they changed; True when a new one is now served."""
        signature = self._stat()
        if signature in (self._signature, self._failed):
            return False
        try:
            fresh = server_context(self._cert, self._key)
        except (ssl.SSLError, OSError) as exc:
            self._failed = signature
            log.error(  # noqa: TRY400 - the reason matters, a traceback would be noise
                "tls.reload_failed",
                cert=str(self._cert),
                key=str(self._key),
                error=str(exc),
                action="keeping the current certificate",
            )
            return False
        self._current = fresh
        self._signature = signature
        self._failed = None
        log.info("tls.reloaded", cert=str(self._cert), serial=_leaf_serial_hex(self._cert))
        return True

    def _select_context(
        self, ssl_object: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        current = self._current
        if current is not self._outer:
            ssl_object.context = current

    def _stat(self) -> tuple[_FileSignature, _FileSignature]:
        return _file_signature(self._cert), _file_signature(self._key)


def _file_signature(path: Path) -> _FileSignature:
    """Identity and version of a file: a rename changes the inode even within one mtime tick."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


def _leaf_serial_hex(cert: Path) -> str | None:
    """For the log line only; the served certificate was loaded by OpenSSL itself."""
    try:
        return format(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number, "x")
    except (OSError, ValueError):
        return None
