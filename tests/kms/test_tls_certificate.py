"""The KMS's self-signed TLS certificate is a server certificate, not a CA that could vouch for other hosts."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kms.server import self_signed_certificate
from softphone.keys.kms_client import KmsClient
from tests.kms.helpers import KMS_URI, make_community, start_kms


def test_self_signed_certificate_is_not_a_ca(tmp_path: Path) -> None:
    cert_path, _ = self_signed_certificate(tmp_path, ["127.0.0.1", "localhost"])
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.crl_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_phone_verifies_the_served_certificate(tmp_path: Path) -> None:
    users = make_community(tmp_path / "kms", users=("sip:alice@example.org",))
    with start_kms(tmp_path / "kms") as server:
        init = KmsClient(server.url, users["sip:alice@example.org"].token, cafile=server.cafile).init()
    assert init.certificate.kms_uri == KMS_URI
