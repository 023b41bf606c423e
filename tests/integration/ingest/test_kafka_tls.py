"""Kafka TLS material from settings: the CA that signs the brokers and a client certificate,
checked by a real TLS handshake with a server that requires a client certificate."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import pytest

from stream.config import Settings
from stream.errors import ConfigError
from stream.ingest.kafka import client_options, ssl_context


def openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a broker certificate for 127.0.0.1 and a client certificate, all signed by it;
    the client key encrypted with a passphrase."""
    directory = tmp_path_factory.mktemp("pki")
    openssl(directory, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n", encoding="utf-8")
    for name, extra in (("broker", ["-extfile", "san.ext"]), ("client", [])):
        openssl(directory, "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr")
        openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey",
                "ca.key", "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *extra)
    openssl(directory, "pkey", "-in", "client.key", "-aes256", "-passout", "pass:k3y",
            "-out", "client-encrypted.key")
    return directory


def tls_settings(pki: Path, **overrides: str) -> Settings:
    values = {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": str(pki / "ca.pem"),
              "kafka_ssl_certfile": str(pki / "client.pem"),
              "kafka_ssl_keyfile": str(pki / "client-encrypted.key"),
              "kafka_ssl_key_password": "k3y"} | overrides
    return Settings(**values)


async def test_the_client_certificate_reaches_a_broker_that_requires_one(pki: Path) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH,
                                                cafile=str(pki / "ca.pem"))
    server_context.load_cert_chain(pki / "broker.pem", pki / "broker.key")
    server_context.verify_mode = ssl.CERT_REQUIRED
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        seen.append(dict(item[0] for item in peer["subject"])["commonName"])
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        context = client_options(tls_settings(pki))["ssl_context"]
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        writer.close()
        await asyncio.sleep(0.1)
    assert seen == ["client"]


def test_a_wrong_key_password_names_the_settings(pki: Path) -> None:
    with pytest.raises(ConfigError, match="CALLSTREAM_KAFKA_SSL_KEY_PASSWORD"):
        ssl_context(tls_settings(pki, kafka_ssl_key_password="wrong"))


def test_a_key_without_a_certificate_is_refused(pki: Path) -> None:
    with pytest.raises(ConfigError, match="CALLSTREAM_KAFKA_SSL_CERTFILE"):
        ssl_context(tls_settings(pki, kafka_ssl_certfile=""))


def test_a_file_that_is_not_a_ca_bundle(pki: Path) -> None:
    with pytest.raises(ConfigError, match="CALLSTREAM_KAFKA_SSL_CAFILE"):
        ssl_context(tls_settings(pki, kafka_ssl_cafile=str(pki / "san.ext")))


def test_the_sasl_password_is_handed_over_in_clear_only_to_the_client(pki: Path) -> None:
    settings = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_password="pw-s3cret",
                        kafka_ssl_cafile=str(pki / "ca.pem"))
    assert client_options(settings)["sasl_plain_password"] == "pw-s3cret"
    assert "pw-s3cret" not in repr(settings)
