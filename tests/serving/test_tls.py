"""TLS on the gRPC port from an SSLConfig text proto (PEM inline, as TF Serving reads it).

The certificate is self-signed and generated here; the oracles are grpc's
own TLS handshake (a client trusting that cert) and a plaintext client
being refused.
"""

import datetime

import grpc
import numpy as np
import pytest
from conftest import LM, start_server
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import text_format

from rnnserve.serving.client import PredictionClient, tls_credentials
from rnnserve.serving.config import read_text_proto
from rnnserve.serving.config_protos import SSLConfig
from rnnserve.serving.errors import ServingError


def self_signed():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def tls_server(exports, tmp_path_factory):
    key_pem, cert_pem = self_signed()
    config = SSLConfig(server_key=key_pem.decode(), server_cert=cert_pem.decode())
    path = tmp_path_factory.mktemp("tls") / "ssl.config"
    path.write_text(text_format.MessageToString(config))
    ssl = read_text_proto(str(path), SSLConfig(), "--ssl_config_file")  # the file form TF Serving reads
    running = start_server({LM: exports[LM]}, ssl=ssl, rest_api_port=None)
    yield running, cert_pem
    running.stop(grace=2)


def test_tls_client_trusting_the_cert_is_served(tls_server):
    server, cert_pem = tls_server
    credentials = tls_credentials(cert_pem)
    client = PredictionClient(f"localhost:{server.grpc_port}", timeout=30, credentials=credentials)
    outputs = client.predict(LM, {"tokens": np.array([[1, 2]], np.int32)})
    assert outputs["logits"].shape == (1, 2, 34) and client.health() == "SERVING"


def test_plaintext_client_is_refused(tls_server):
    server, _ = tls_server
    client = PredictionClient(f"localhost:{server.grpc_port}", timeout=5)
    with pytest.raises(ServingError) as caught:
        client.predict(LM, {"tokens": np.array([[1, 2]], np.int32)})
    assert caught.value.code == "UNAVAILABLE"


def test_client_that_does_not_trust_the_cert_is_refused(tls_server):
    server, _ = tls_server
    _, other_cert = self_signed()
    client = PredictionClient(
        f"localhost:{server.grpc_port}", timeout=5, credentials=tls_credentials(other_cert)
    )
    with pytest.raises(ServingError) as caught:
        client.status(LM)
    assert caught.value.code == "UNAVAILABLE"
    assert grpc.StatusCode.UNAVAILABLE.name == caught.value.code
