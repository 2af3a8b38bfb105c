"""The local CA: first-run generation, file safety, idempotence and leaf renewal."""

from __future__ import annotations

import ipaddress
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import DNSName, IPAddress, PolicyBuilder, Store
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from strongroom.config import Settings, TlsSettings
from strongroom.edge import local_ca
from strongroom.edge.local_ca import (
    TlsConfigError,
    ensure_local_pki,
    generate_ca,
    issue_leaf,
    renew_leaf_if_needed,
    san_names,
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def _certs(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def _leaf(path: Path) -> x509.Certificate:
    return _certs(path)[0]


def _with_hostnames(settings: Settings, hostnames: list[str]) -> Settings:
    return settings.model_copy(
        update={"tls": settings.tls.model_copy(update={"hostnames": hostnames})}
    )


def test_first_run_creates_a_ca_whose_leaf_chain_verifies(settings: Settings) -> None:
    paths = ensure_local_pki(settings)
    assert paths.ca_cert is not None
    ca = _certs(paths.ca_cert)[0]
    chain = _certs(paths.cert)
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(DNSName("localhost"))

    verified = verifier.verify(chain[0], chain[1:])

    assert verified[-1] == ca


def test_files_live_in_the_data_dirs_tls_directory(settings: Settings) -> None:
    paths = ensure_local_pki(settings)

    tls_dir = settings.tls_dir.absolute()
    assert (paths.ca_cert, paths.cert, paths.key) == (
        tls_dir / "ca.pem",
        tls_dir / "server.pem",
        tls_dir / "server-key.pem",
    )
    assert (tls_dir / "ca-key.pem").is_file()


def test_leaf_covers_localhost_and_loopback_addresses(settings: Settings) -> None:
    paths = ensure_local_pki(settings)
    leaf = _leaf(paths.cert)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value

    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("::1") in sans.get_values_for_type(x509.IPAddress)


def test_leaf_verifies_for_the_loopback_ip(settings: Settings) -> None:
    paths = ensure_local_pki(settings)
    assert paths.ca_cert is not None
    verifier = (
        PolicyBuilder()
        .store(Store(_certs(paths.ca_cert)))
        .build_server_verifier(IPAddress(ipaddress.ip_address("127.0.0.1")))
    )

    verifier.verify(_leaf(paths.cert), [])


def test_private_keys_are_readable_by_the_owner_only(settings: Settings) -> None:
    ensure_local_pki(settings)

    for name in ("ca-key.pem", "server-key.pem"):
        assert stat.S_IMODE((settings.tls_dir / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.tls_dir.stat().st_mode) == 0o700


def test_existing_tls_directory_is_narrowed_to_the_owner(settings: Settings) -> None:
    settings.tls_dir.mkdir(parents=True, mode=0o755)
    settings.tls_dir.chmod(0o755)

    ensure_local_pki(settings)

    assert stat.S_IMODE(settings.tls_dir.stat().st_mode) == 0o700


def test_ca_may_only_sign_leaves(settings: Settings) -> None:
    paths = ensure_local_pki(settings)
    assert paths.ca_cert is not None
    ca = _certs(paths.ca_cert)[0]

    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    assert ca.subject.rfc4514_string().startswith("CN=Strongroom Local CA ")


def test_ca_validity_follows_the_setting(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, tls=TlsSettings(ca_validity_days=400))
    now = datetime.now(UTC)

    paths = ensure_local_pki(settings, now=now)

    assert paths.ca_cert is not None
    ca = _certs(paths.ca_cert)[0]
    assert abs(ca.not_valid_after_utc - (now + timedelta(days=400))) < timedelta(seconds=1)


def test_leaf_is_a_short_lived_server_certificate(settings: Settings) -> None:
    now = datetime.now(UTC)
    paths = ensure_local_pki(settings, now=now)
    leaf = _leaf(paths.cert)

    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = timedelta(days=settings.tls.leaf_validity_days)
    assert abs(leaf.not_valid_after_utc - (now + lifetime)) < timedelta(seconds=1)
    assert leaf.not_valid_before_utc < now


def test_leaf_file_holds_the_leaf_then_the_ca(settings: Settings) -> None:
    paths = ensure_local_pki(settings)
    assert paths.ca_cert is not None

    chain = _certs(paths.cert)

    assert chain[1:] == _certs(paths.ca_cert)
    chain[0].verify_directly_issued_by(chain[1])


def test_second_call_changes_no_file(settings: Settings) -> None:
    ensure_local_pki(settings)
    before = {p.name: p.read_bytes() for p in settings.tls_dir.glob("*.pem")}

    ensure_local_pki(settings)

    assert {p.name: p.read_bytes() for p in settings.tls_dir.glob("*.pem")} == before


def test_no_temporary_files_are_left_behind(settings: Settings) -> None:
    ensure_local_pki(settings)

    assert sorted(p.name for p in settings.tls_dir.glob("*.pem*")) == [
        "ca-key.pem",
        "ca.pem",
        "server-key.pem",
        "server.pem",
    ]


def test_concurrent_first_runs_create_one_ca(settings: Settings) -> None:
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_local_pki(settings)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert len(results) == 4
    ca = _certs(settings.tls_dir / "ca.pem")[0]
    _leaf(settings.tls_dir / "server.pem").verify_directly_issued_by(ca)


def test_fresh_leaf_is_not_renewed(settings: Settings) -> None:
    ensure_local_pki(settings)

    assert renew_leaf_if_needed(settings) is False


def test_leaf_inside_the_renewal_window_is_reissued(settings: Settings) -> None:
    paths = ensure_local_pki(settings)
    old = _leaf(paths.cert)
    window = timedelta(days=settings.tls.leaf_renew_before_days)
    soon = old.not_valid_after_utc - window + timedelta(hours=1)

    assert renew_leaf_if_needed(settings, now=soon) is True

    new = _leaf(paths.cert)
    assert new.serial_number != old.serial_number
    assert new.public_key() != old.public_key()
    assert new.not_valid_after_utc > old.not_valid_after_utc
    assert paths.ca_cert is not None
    new.verify_directly_issued_by(_certs(paths.ca_cert)[0])


def test_leaf_just_outside_the_renewal_window_is_kept(settings: Settings) -> None:
    paths = ensure_local_pki(settings)
    old = _leaf(paths.cert)
    window = timedelta(days=settings.tls.leaf_renew_before_days)
    almost = old.not_valid_after_utc - window - timedelta(hours=1)

    assert renew_leaf_if_needed(settings, now=almost) is False
    assert _leaf(paths.cert).serial_number == old.serial_number


def test_renewal_keeps_the_ca(settings: Settings) -> None:
    paths = ensure_local_pki(settings)
    assert paths.ca_cert is not None
    ca_before = paths.ca_cert.read_bytes()
    soon = _leaf(paths.cert).not_valid_after_utc - timedelta(days=1)

    renew_leaf_if_needed(settings, now=soon)

    assert paths.ca_cert.read_bytes() == ca_before


def test_changed_hostnames_reissue_the_leaf(settings: Settings) -> None:
    ensure_local_pki(settings)
    changed = _with_hostnames(settings, [*settings.tls.hostnames, "pay.example.test"])

    assert renew_leaf_if_needed(changed) is True

    assert "pay.example.test" in san_names(_leaf(settings.tls_dir / "server.pem"))


def test_reordered_hostnames_do_not_reissue_the_leaf(settings: Settings) -> None:
    ensure_local_pki(settings)
    reordered = _with_hostnames(settings, list(reversed(settings.tls.hostnames)))

    assert renew_leaf_if_needed(reordered) is False


def test_missing_ca_is_recreated_and_the_leaf_reissued_under_it(settings: Settings) -> None:
    paths = ensure_local_pki(settings)
    assert paths.ca_cert is not None
    (settings.tls_dir / "ca.pem").unlink()
    (settings.tls_dir / "ca-key.pem").unlink()

    ensure_local_pki(settings)

    _leaf(paths.cert).verify_directly_issued_by(_certs(paths.ca_cert)[0])


def test_corrupt_leaf_key_is_reissued(settings: Settings) -> None:
    paths = ensure_local_pki(settings)
    paths.key.write_bytes(b"not a key")

    assert renew_leaf_if_needed(settings) is True

    key = serialization.load_pem_private_key(paths.key.read_bytes(), password=None)
    assert key.public_key() == _leaf(paths.cert).public_key()


def test_leaf_never_outlives_its_ca() -> None:
    now = datetime.now(UTC)
    ca, ca_key = generate_ca("test CA", validity=timedelta(days=5), now=now, backdate=timedelta(0))

    leaf, _ = issue_leaf(
        ca, ca_key, ["localhost"], validity=timedelta(days=30), now=now, backdate=timedelta(0)
    )

    assert leaf.not_valid_after_utc == ca.not_valid_after_utc


def test_naive_now_is_rejected(settings: Settings) -> None:
    with pytest.raises(ValueError, match="timezone"):
        ensure_local_pki(settings, now=datetime(2030, 1, 1))


def test_empty_hostnames_are_a_configuration_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, tls=TlsSettings(hostnames=[]))

    with pytest.raises(TlsConfigError, match="at least one"):
        ensure_local_pki(settings)


# Configured certificate files -----------------------------------------------------------


def _write_configured(tmp_path: Path) -> tuple[Path, Path]:
    now = datetime.now(UTC)
    ca, ca_key = generate_ca("ops CA", validity=timedelta(days=90), now=now, backdate=timedelta(0))
    leaf, key = issue_leaf(
        ca, ca_key, ["pay.example.test"], validity=timedelta(days=5), now=now, backdate=timedelta(0)
    )
    cert_path, key_path = tmp_path / "ops.pem", tmp_path / "ops-key.pem"
    cert_path.write_bytes(local_ca._cert_pem(leaf))
    key_path.write_bytes(local_ca._key_pem(key))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_configured_files_are_returned_without_a_ca(tmp_path: Path) -> None:
    cert_path, key_path = _write_configured(tmp_path)
    settings = Settings(
        data_dir=tmp_path / "data", tls=TlsSettings(cert_file=cert_path, key_file=key_path)
    )

    paths = ensure_local_pki(settings)

    assert (paths.ca_cert, paths.cert, paths.key) == (None, cert_path, key_path)
    assert not settings.tls_dir.exists()


def test_configured_files_are_never_renewed(tmp_path: Path) -> None:
    cert_path, key_path = _write_configured(tmp_path)
    settings = Settings(
        data_dir=tmp_path / "data", tls=TlsSettings(cert_file=cert_path, key_file=key_path)
    )
    before = cert_path.read_bytes()

    renewed = renew_leaf_if_needed(settings, now=datetime.now(UTC) + timedelta(days=365))

    assert renewed is False
    assert cert_path.read_bytes() == before


def test_missing_configured_file_is_a_configuration_error(tmp_path: Path) -> None:
    cert_path, _ = _write_configured(tmp_path)
    tls = TlsSettings(cert_file=cert_path, key_file=tmp_path / "absent.pem")

    with pytest.raises(TlsConfigError, match="does not exist"):
        ensure_local_pki(Settings(data_dir=tmp_path, tls=tls))


def test_configured_key_of_another_certificate_is_a_configuration_error(tmp_path: Path) -> None:
    cert_path, _ = _write_configured(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_key = _write_configured(tmp_path / "other")
    tls = TlsSettings(cert_file=cert_path, key_file=other_key)

    with pytest.raises(TlsConfigError, match="cannot load"):
        ensure_local_pki(Settings(data_dir=tmp_path, tls=tls))


def test_certificate_without_key_setting_is_a_configuration_error(tmp_path: Path) -> None:
    cert_path, _ = _write_configured(tmp_path)

    with pytest.raises(TlsConfigError, match="together"):
        ensure_local_pki(Settings(data_dir=tmp_path, tls=TlsSettings(cert_file=cert_path)))


# Invariants -----------------------------------------------------------------------------

_NOW = datetime.now(UTC)
_CA, _CA_KEY = generate_ca(
    "property CA", validity=timedelta(days=365), now=_NOW, backdate=timedelta(0)
)
_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_DNS = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_HOST = st.one_of(_DNS, st.ip_addresses().map(str))


@hyp_settings(max_examples=40, deadline=None)
@given(st.lists(_HOST, min_size=1, max_size=6))
def test_leaf_covers_exactly_the_configured_hostnames(hostnames: list[str]) -> None:
    leaf, key = issue_leaf(
        _CA, _CA_KEY, hostnames, validity=timedelta(days=30), now=_NOW, backdate=timedelta(0)
    )

    assert san_names(leaf) == local_ca.normalised_hostnames(hostnames)
    assert {str(ipaddress.ip_address(h)) for h in hostnames if _is_ip(h)} <= san_names(leaf)
    tls = TlsSettings(hostnames=hostnames)
    assert local_ca.leaf_renewal_reason(leaf, key, _CA, tls, _NOW) is None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
