"""TLS 1.3-only contexts and live certificate reload, over real uvloop listeners on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import uvloop
from cryptography import x509

from strongroom.config import Settings
from strongroom.edge import tls as tls_module
from strongroom.edge.local_ca import TlsPaths, ensure_local_pki, renew_leaf_if_needed
from strongroom.edge.tls import ReloadingContext, client_context, server_context

T = TypeVar("T")
# Every test finishes in milliseconds; this bounds a hung handshake.
TEST_TIMEOUT_S = 10.0
TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def pki(settings: Settings) -> TlsPaths:
    return ensure_local_pki(settings)


@pytest.fixture
def client(pki: TlsPaths) -> ssl.SSLContext:
    assert pki.ca_cert is not None
    return client_context(pki.ca_cert)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(asyncio.wait_for(coro, TEST_TIMEOUT_S))


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


@asynccontextmanager
async def _tls_server(ctx: ssl.SSLContext) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Echo, "127.0.0.1", 0, ssl=ctx)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.tls: ssl.SSLObject = writer.get_extra_info("ssl_object")

    @property
    def serial(self) -> int:
        der = self.tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    async def echo(self, data: bytes = b"ping") -> bytes:
        self.writer.write(data)
        return await self.reader.readexactly(len(data))

    def close(self) -> None:
        self.writer.transport.abort()


async def _connect(port: int, ctx: ssl.SSLContext, server_hostname: str = "localhost") -> _Conn:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname=server_hostname
    )
    return _Conn(reader, writer)


def _leaf_serial(path: Path) -> int:
    return x509.load_pem_x509_certificates(path.read_bytes())[0].serial_number


def _reissue(settings: Settings, tag: str) -> int:
    """Renew the leaf (a changed hostname forces it) and return the new serial."""
    tls = settings.tls.model_copy(update={"hostnames": [*settings.tls.hostnames, f"{tag}.test"]})
    assert renew_leaf_if_needed(settings.model_copy(update={"tls": tls}))
    return _leaf_serial(settings.tls_dir / "server.pem")


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def error(self, event: str, **_: object) -> None:
        self.events.append(("error", event))

    def info(self, event: str, **_: object) -> None:
        self.events.append(("info", event))


# The server context ---------------------------------------------------------------------


def test_tls13_client_completes_a_handshake(pki: TlsPaths, client: ssl.SSLContext) -> None:
    async def scenario() -> tuple[str | None, str | None, bytes]:
        async with _tls_server(server_context(pki.cert, pki.key)) as port:
            conn = await _connect(port, client)
            result = conn.tls.version(), conn.tls.selected_alpn_protocol(), await conn.echo()
            conn.close()
            return result

    assert _run(scenario()) == ("TLSv1.3", "http/1.1", b"ping")


def test_client_limited_to_tls12_is_refused(pki: TlsPaths) -> None:
    assert pki.ca_cert is not None
    old_client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old_client.load_verify_locations(cafile=pki.ca_cert)
    old_client.maximum_version = ssl.TLSVersion.TLSv1_2

    async def scenario() -> None:
        async with _tls_server(server_context(pki.cert, pki.key)) as port:
            await _connect(port, old_client)

    # asyncio and uvloop both drop the connection without flushing the protocol_version
    # alert (checked with `openssl s_client -tls1_2`), so the client sees EOF or a reset.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _run(scenario())


def test_negotiated_cipher_is_a_tls13_suite(pki: TlsPaths, client: ssl.SSLContext) -> None:
    async def scenario() -> tuple[str, str, int] | None:
        async with _tls_server(server_context(pki.cert, pki.key)) as port:
            conn = await _connect(port, client)
            conn.close()
            return conn.tls.cipher()

    cipher = _run(scenario())

    assert cipher is not None
    name, version, bits = cipher
    assert (name in TLS13_SUITES, version, bits >= 128) == (True, "TLSv1.3", True)


def test_server_context_requests_no_client_certificate(pki: TlsPaths) -> None:
    assert server_context(pki.cert, pki.key).verify_mode == ssl.CERT_NONE


def test_server_context_disables_compression_and_renegotiation(pki: TlsPaths) -> None:
    options = server_context(pki.cert, pki.key).options

    assert options & ssl.OP_NO_COMPRESSION
    assert options & ssl.OP_NO_RENEGOTIATION


def test_server_context_accepts_tls13_only(pki: TlsPaths) -> None:
    ctx = server_context(pki.cert, pki.key)

    assert (ctx.minimum_version, ctx.maximum_version) == (
        ssl.TLSVersion.TLSv1_3,
        ssl.TLSVersion.TLSv1_3,
    )


def test_server_context_refuses_a_key_of_another_certificate(pki: TlsPaths, tmp_path: Path) -> None:
    other = ensure_local_pki(Settings(data_dir=tmp_path / "other"))

    with pytest.raises(ssl.SSLError):
        server_context(pki.cert, other.key)


def test_client_context_rejects_a_server_of_another_ca(pki: TlsPaths, tmp_path: Path) -> None:
    other = ensure_local_pki(Settings(data_dir=tmp_path / "other"))
    assert other.ca_cert is not None

    async def scenario() -> None:
        async with _tls_server(server_context(pki.cert, pki.key)) as port:
            await _connect(port, client_context(other.ca_cert))

    with pytest.raises(ssl.SSLCertVerificationError):
        _run(scenario())


def test_client_context_rejects_a_name_the_leaf_does_not_cover(
    pki: TlsPaths, client: ssl.SSLContext
) -> None:
    async def scenario() -> None:
        async with _tls_server(server_context(pki.cert, pki.key)) as port:
            await _connect(port, client, server_hostname="elsewhere.test")

    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _run(scenario())


def _blocking_session(
    port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> tuple[ssl.SSLSession | None, bool | None, int]:
    """One request on a blocking socket; TLS 1.3 tickets arrive before the echo does."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TEST_TIMEOUT_S) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls,
    ):
        tls.sendall(b"ping")
        assert tls.recv(4) == b"ping"
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        serial = x509.load_der_x509_certificate(der).serial_number
        return tls.session, tls.session_reused, serial


def test_session_ticket_resumes_without_a_full_handshake(
    pki: TlsPaths, client: ssl.SSLContext
) -> None:
    async def scenario() -> tuple[bool, bool]:
        async with _tls_server(server_context(pki.cert, pki.key)) as port:
            session, first_reused, _ = await asyncio.to_thread(_blocking_session, port, client)
            _, reused, _ = await asyncio.to_thread(_blocking_session, port, client, session)
            return first_reused, reused

    assert _run(scenario()) == (False, True)


# Reload ---------------------------------------------------------------------------------


def test_unchanged_files_do_not_reload(pki: TlsPaths) -> None:
    reloading = ReloadingContext(pki.cert, pki.key)

    assert reloading.maybe_reload() is False


def test_reloading_context_needs_loadable_files_to_start(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        ReloadingContext(tmp_path / "absent.pem", tmp_path / "absent-key.pem")


def test_new_handshakes_see_a_reloaded_certificate(
    settings: Settings, pki: TlsPaths, client: ssl.SSLContext
) -> None:
    reloading = ReloadingContext(pki.cert, pki.key)
    old_serial = _leaf_serial(pki.cert)

    async def scenario() -> tuple[int, int, bool]:
        async with _tls_server(reloading.context) as port:
            before = await _connect(port, client)
            new_serial = _reissue(settings, "reload")
            reloaded = reloading.maybe_reload()
            after = await _connect(port, client)
            before.close()
            after.close()
            assert after.serial == new_serial
            return before.serial, after.serial, reloaded

    before, after, reloaded = _run(scenario())

    assert reloaded is True
    assert before == old_serial
    assert after != old_serial


def test_reload_reaches_clients_that_send_no_server_name(
    settings: Settings, pki: TlsPaths, client: ssl.SSLContext
) -> None:
    reloading = ReloadingContext(pki.cert, pki.key)

    async def scenario() -> tuple[int, int]:
        async with _tls_server(reloading.context) as port:
            new_serial = _reissue(settings, "nosni")
            reloading.maybe_reload()
            conn = await _connect(port, client, server_hostname="127.0.0.1")
            conn.close()
            return conn.serial, new_serial

    served, new_serial = _run(scenario())

    assert served == new_serial


def test_established_connections_keep_working_after_a_reload(
    settings: Settings, pki: TlsPaths, client: ssl.SSLContext
) -> None:
    reloading = ReloadingContext(pki.cert, pki.key)
    old_serial = _leaf_serial(pki.cert)

    async def scenario() -> tuple[bytes, int]:
        async with _tls_server(reloading.context) as port:
            conn = await _connect(port, client)
            await conn.echo()
            _reissue(settings, "established")
            assert reloading.maybe_reload()
            (await _connect(port, client)).close()  # a handshake on the new certificate
            reply = await conn.echo(b"still here")
            conn.close()
            return reply, conn.serial

    assert _run(scenario()) == (b"still here", old_serial)


def test_corrupt_new_certificate_keeps_the_old_one(pki: TlsPaths, client: ssl.SSLContext) -> None:
    reloading = ReloadingContext(pki.cert, pki.key)
    old_serial = _leaf_serial(pki.cert)
    pki.cert.write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")

    async def scenario() -> tuple[bool, int]:
        async with _tls_server(reloading.context) as port:
            reloaded = reloading.maybe_reload()
            conn = await _connect(port, client)
            conn.close()
            return reloaded, conn.serial

    assert _run(scenario()) == (False, old_serial)


def test_corrupt_certificate_is_logged_once(pki: TlsPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(tls_module, "log", recorder)
    reloading = ReloadingContext(pki.cert, pki.key)
    pki.cert.write_bytes(b"not a certificate")

    reloading.maybe_reload()
    reloading.maybe_reload()

    assert recorder.events == [("error", "tls.reload_failed")]


def test_repaired_certificate_loads_after_a_failed_reload(
    settings: Settings, pki: TlsPaths
) -> None:
    reloading = ReloadingContext(pki.cert, pki.key)
    pki.cert.write_bytes(b"not a certificate")
    assert reloading.maybe_reload() is False

    _reissue(settings, "repaired")

    assert reloading.maybe_reload() is True


def test_key_renamed_before_its_certificate_is_served_only_once_both_match(
    settings: Settings, pki: TlsPaths, client: ssl.SSLContext, tmp_path: Path
) -> None:
    # A second leaf from the same CA, staged elsewhere, then moved in the order the
    # renewal uses: key first, certificate second.
    staging = Settings(data_dir=tmp_path / "staging", tls=settings.tls)
    staging.tls_dir.mkdir(parents=True)
    for name in ("ca.pem", "ca-key.pem"):
        shutil.copy(settings.tls_dir / name, staging.tls_dir / name)
    staged = ensure_local_pki(staging)
    reloading = ReloadingContext(pki.cert, pki.key)
    old_serial, new_serial = _leaf_serial(pki.cert), _leaf_serial(staged.cert)

    async def scenario() -> tuple[bool, int, bool, int]:
        async with _tls_server(reloading.context) as port:
            os.replace(staged.key, pki.key)
            halfway = reloading.maybe_reload()
            during = await _connect(port, client)
            os.replace(staged.cert, pki.cert)
            complete = reloading.maybe_reload()
            after = await _connect(port, client)
            during.close()
            after.close()
            return halfway, during.serial, complete, after.serial

    assert _run(scenario()) == (False, old_serial, True, new_serial)


def test_session_tickets_survive_a_reload(
    settings: Settings, pki: TlsPaths, client: ssl.SSLContext
) -> None:
    reloading = ReloadingContext(pki.cert, pki.key)

    async def scenario() -> tuple[bool, bool]:
        async with _tls_server(reloading.context) as port:
            session, _, _ = await asyncio.to_thread(_blocking_session, port, client)
            _reissue(settings, "tickets")
            assert reloading.maybe_reload()
            _, reused, _ = await asyncio.to_thread(_blocking_session, port, client, session)
            _, fresh_reused, _ = await asyncio.to_thread(_blocking_session, port, client)
            return reused, fresh_reused

    assert _run(scenario()) == (True, False)
