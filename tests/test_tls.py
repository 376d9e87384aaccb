"""A TLS cluster: real ``dask scheduler`` and ``dask worker`` with certificates this test makes itself.

A client with a certificate of the cluster's CA fits; one with another CA's certificate is refused.  TLS files
that cannot be loaded are refused by key and file before any connection.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import assert_user_error, dask_cluster, gmm, make_blobs, write_parquet


def _certificate(directory: Path, name: str, issuer=None):
    """A key and a certificate for 127.0.0.1 signed by ``issuer`` (key, cert), or a self-signed CA."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[1].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(issuer[0] if issuer else key, hashes.SHA256())
    (directory / f"{name}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    """A TLS scheduler and one worker on 127.0.0.1, and the certificates (cluster's CA and a rogue CA)."""
    d = tmp_path_factory.mktemp("tls")
    ca = _certificate(d, "ca")
    _certificate(d, "node", ca)
    _certificate(d, "client", ca)
    rogue = _certificate(d, "rogue-ca")
    _certificate(d, "intruder", rogue)
    tls = ["--tls-ca-file", str(d / "ca.pem"), "--tls-cert", str(d / "node.pem"), "--tls-key", str(d / "node.key")]
    with dask_cluster(d, 1, *tls) as (address, _):
        assert address.startswith("tls://")
        yield address, d


def _config(tmp_path: Path, certs: Path, name: str) -> Path:
    write_parquet(tmp_path / "data", make_blobs(95), 2)
    config = {
        "data": {"path": "data"},
        "model": {"n_components": 3, "max_iter": 5},
        "output": {"path": f"out-{name}"},
        "cluster": {
            "security": {
                "ca_file": str(certs / "ca.pem"),
                "cert_file": str(certs / f"{name}.pem"),
                "key_file": str(certs / f"{name}.key"),
            },
            "connect_timeout": 10,
            "worker_timeout": 60,
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_a_client_with_the_clusters_certificate_fits_over_tls(tmp_path, tls_cluster):
    address, certs = tls_cluster
    run = gmm(tmp_path, "fit", _config(tmp_path, certs, "client").name, "--scheduler", address)
    assert run.returncode == 0, run.stderr
    assert f"scheduler {address}" in run.stderr
    assert (tmp_path / "out-client" / "model.npz").exists()


@pytest.mark.slow
def test_a_client_with_another_cas_certificate_is_refused(tmp_path, tls_cluster):
    address, certs = tls_cluster
    run = gmm(tmp_path, "fit", _config(tmp_path, certs, "intruder").name, "--scheduler", address)
    assert_user_error(run, rf"cannot reach the Dask scheduler at '{address}': .*(SSL|TLS|certificate)", code=1)
    assert not (tmp_path / "out-intruder").exists()


@pytest.mark.slow
def test_a_plain_tcp_client_is_refused(tmp_path, tls_cluster):
    address, _ = tls_cluster
    write_parquet(tmp_path / "data", make_blobs(96), 2)
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump({"data": {"path": "data"}, "output": {"path": "out"}, "cluster": {"connect_timeout": 3}})
    )
    run = gmm(tmp_path, "fit", "c.yaml", "--scheduler", address.replace("tls://", "tcp://"))
    assert_user_error(run, r"^error: cannot reach the Dask scheduler at 'tcp://127\.0\.0\.1:\d+': ", code=1)


# --------------------------------------------------------------------------- files that are not what they should be
@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A CA, a client certificate and key it signed, another key, and the same files in DER (not PEM) and encrypted."""
    from cryptography.hazmat.primitives import serialization

    d = tmp_path_factory.mktemp("certificates")
    ca = _certificate(d, "ca")
    _, client = _certificate(d, "client", ca)
    other_key, _ = _certificate(d, "other", ca)
    (d / "ca.der").write_bytes(ca[1].public_bytes(serialization.Encoding.DER))
    (d / "client.der").write_bytes(client.public_bytes(serialization.Encoding.DER))
    (d / "client-key.der").write_bytes(
        other_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (d / "encrypted.key").write_bytes(
        other_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    return d


def _invoke_fit(tmp_path, monkeypatch, security: dict):
    """``gmm fit`` in this process against a TLS address that nothing is asked of (the files are checked first)."""
    from click.testing import CliRunner

    from pipeline.cli import main

    write_parquet(tmp_path / "data", make_blobs(97, n_per=20), 1)
    config = {"data": {"path": "data"}, "output": {"path": "out"}, "cluster": {"security": security}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["fit", "c.yaml", "--scheduler", "tls://127.0.0.1:9"])
    return subprocess.CompletedProcess([], result.exit_code, result.stdout, result.stderr)


@pytest.mark.parametrize(
    ("files", "pattern"),
    [
        (
            {"ca_file": "ca.der"},
            r"cluster\.security\.ca_file '.*ca\.der' is not a PEM certificate "
            r"\(text with '-----BEGIN CERTIFICATE-----'; openssl x509 converts others\)",
        ),
        (
            {"cert_file": "client.der"},
            r"cluster\.security\.cert_file '.*client\.der' is not a PEM certificate",
        ),
        (
            {"cert_file": "client.key"},
            r"cluster\.security\.cert_file '.*client\.key' is not a PEM certificate",
        ),
        (
            {"key_file": "client-key.der"},
            r"cluster\.security\.key_file '.*client-key\.der' is not a PEM private key \(text with "
            r"'-----BEGIN PRIVATE KEY-----'",
        ),
        (
            {"key_file": "other.key"},
            r"cluster\.security\.cert_file '.*client\.pem' and key_file '.*other\.key' cannot be used together "
            r"\(is the key the certificate's\?\): SSLError: .*KEY_VALUES_MISMATCH",
        ),
        (
            {"key_file": "encrypted.key"},
            r"cluster\.security\.key_file '.*encrypted\.key' is an encrypted private key: Dask reads only unencrypted",
        ),
    ],
)
def test_tls_files_that_cannot_be_loaded_are_named(tmp_path, monkeypatch, certificates, files, pattern):
    security = {"ca_file": "ca.pem", "cert_file": "client.pem", "key_file": "client.key", **files}
    run = _invoke_fit(tmp_path, monkeypatch, {key: str(certificates / name) for key, name in security.items()})
    assert_user_error(run, "^error: " + pattern + ".*$", tmp_path)
