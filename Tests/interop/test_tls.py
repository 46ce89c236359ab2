"""gRPC over TLS: stock grpcio secure channels and grpcurl -cacert, mutual TLS, a wrong CA refused,
certificate reload on SIGHUP without dropping connections, the raw-HTTP/2 abuses over TLS, and the
whole set as `scripts/up --tls` starts it (the services calling each other over TLS)."""
import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import grpc
import pytest

from conftest import BIN_DIR, ServerProcess, wait_for
from grpc_health.v1 import health_pb2, health_pb2_grpc
from wire_interop import messages_pb2, test_pb2_grpc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def make_certs(path):
    subprocess.run([os.path.join(ROOT, "scripts", "make-certs"), str(path)], check=True, capture_output=True)
    return {name: os.path.join(str(path), name) for name in os.listdir(str(path))}


def read(path):
    with open(path, "rb") as fh:
        return fh.read()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("tls") / "pki")


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("tls-other") / "pki")


@pytest.fixture(scope="module")
def tls_server(certs):
    s = ServerProcess("wire-interop-server", ["--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"],
                                              "--handshake-timeout-ms", "1000"])
    yield s
    assert s.alive()
    assert s.stop() == 0


@pytest.fixture(scope="module")
def mtls_server(certs):
    s = ServerProcess("wire-interop-server", ["--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"],
                                              "--tls-client-ca", certs["ca.pem"]])
    yield s
    assert s.alive()
    assert s.stop() == 0


def secure_stub(server, ca, cert=None, key=None):
    creds = grpc.ssl_channel_credentials(root_certificates=read(ca), private_key=read(key) if key else None,
                                         certificate_chain=read(cert) if cert else None)
    ch = grpc.secure_channel(server.address, creds)
    return ch, test_pb2_grpc.TestServiceStub(ch)


def test_grpcio_secure_channel_calls(tls_server, certs):
    ch, stub = secure_stub(tls_server, certs["ca.pem"])
    r = stub.UnaryCall(messages_pb2.SimpleRequest(response_size=64), timeout=10)
    assert len(r.payload.body) == 64
    # Streaming both ways over the same TLS connection.
    reqs = [messages_pb2.StreamingOutputCallRequest(response_parameters=[messages_pb2.ResponseParameters(size=n)]) for n in (1, 10, 100)]
    assert [len(x.payload.body) for x in stub.FullDuplexCall(iter(reqs), timeout=10)] == [1, 10, 100]
    ch.close()


# Offering TLS 1.1 is the point of the second half: Python's warning that it is deprecated is not news.
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_version_and_alpn(tls_server, certs):
    ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", tls_server.port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == "h2"
            assert s.version() in ("TLSv1.2", "TLSv1.3")
    # A client that offers TLS 1.1 only (its own security level lowered so that it really offers it):
    # the server must refuse with a protocol-version alert.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = ssl.TLSVersion.TLSv1_1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", tls_server.port)) as raw:
        with pytest.raises(ssl.SSLError) as e:
            old.wrap_socket(raw, server_hostname="localhost").do_handshake()
    assert "ALERT_PROTOCOL_VERSION" in str(e.value).upper(), e.value


def test_grpcurl_with_cacert(tls_server, certs):
    out = subprocess.run(["grpcurl", "-cacert", certs["ca.pem"], tls_server.address, "list"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "grpc.testing.TestService" in out.stdout


def test_plaintext_client_and_wrong_ca_are_refused(tls_server, other_ca):
    ch = grpc.insecure_channel(tls_server.address)
    with pytest.raises(grpc.RpcError) as e:
        test_pb2_grpc.TestServiceStub(ch).UnaryCall(messages_pb2.SimpleRequest(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    ch.close()
    ch, stub = secure_stub(tls_server, other_ca["ca.pem"])
    with pytest.raises(grpc.RpcError) as e:
        stub.UnaryCall(messages_pb2.SimpleRequest(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    ch.close()


def test_mutual_tls_requires_a_client_certificate_from_the_ca(mtls_server, certs, other_ca):
    ch, stub = secure_stub(mtls_server, certs["ca.pem"])
    with pytest.raises(grpc.RpcError) as e:
        stub.UnaryCall(messages_pb2.SimpleRequest(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    ch.close()
    # A certificate from another CA is refused too.
    ch, stub = secure_stub(mtls_server, certs["ca.pem"], other_ca["client.pem"], other_ca["client.key"])
    with pytest.raises(grpc.RpcError) as e:
        stub.UnaryCall(messages_pb2.SimpleRequest(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    ch.close()
    ch, stub = secure_stub(mtls_server, certs["ca.pem"], certs["client.pem"], certs["client.key"])
    assert len(stub.UnaryCall(messages_pb2.SimpleRequest(response_size=3), timeout=10).payload.body) == 3
    ch.close()


def test_silent_and_garbage_tls_connections_are_closed_and_the_server_carries_on(tls_server, certs):
    # No ClientHello at all: closed by the handshake timeout (1 s here).
    silent = socket.create_connection(("127.0.0.1", tls_server.port))
    silent.settimeout(5)
    started = time.time()
    try:
        assert silent.recv(1) == b""
    except ConnectionResetError:
        pass
    assert time.time() - started < 4
    silent.close()
    # TLS completed, then no HTTP/2 preface: closed too.
    ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    ctx.set_alpn_protocols(["h2"])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls_server.port)), server_hostname="localhost")
    s.settimeout(5)
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except (ConnectionResetError, ssl.SSLError):
        pass
    s.close()
    # TLS, then garbage instead of the preface: closed, and others are served.
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls_server.port)), server_hostname="localhost")
    s.sendall(b"GET / HTTP/1.1\r\n\r\n" + b"\x00" * 200)
    s.settimeout(5)
    try:
        while s.recv(65536):
            pass
    except (ConnectionResetError, ssl.SSLError):
        pass
    s.close()
    # Not TLS at all (an HTTP/2 preface in clear): the handshake fails, the server carries on.
    p = socket.create_connection(("127.0.0.1", tls_server.port))
    p.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    p.settimeout(5)
    try:
        while p.recv(65536):
            pass
    except ConnectionResetError:
        pass
    p.close()
    ch, stub = secure_stub(tls_server, certs["ca.pem"])
    assert len(stub.UnaryCall(messages_pb2.SimpleRequest(response_size=5), timeout=10).payload.body) == 5
    ch.close()


def fingerprint(port):
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def test_sighup_reloads_the_certificate_without_dropping_connections(tmp_path, certs):
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(certs["server.pem"], live / "server.pem")
    shutil.copy(certs["server.key"], live / "server.key")
    os.chmod(live / "server.key", 0o600)
    server = ServerProcess("routing-service", ["--data-dir", str(tmp_path / "data"), "--auth", "off", "--metrics-port=-1",
                                               "--tls-cert", str(live / "server.pem"), "--tls-key", str(live / "server.key")])
    try:
        before = fingerprint(server.port)
        assert before == hashlib.sha256(ssl.PEM_cert_to_DER_cert(read(certs["server.pem"]).decode())).hexdigest()
        creds = grpc.ssl_channel_credentials(root_certificates=read(certs["ca.pem"]))
        ch = grpc.secure_channel(server.address, creds)
        health = health_pb2_grpc.HealthStub(ch)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        renewed = make_certs(tmp_path / "renewed")
        shutil.copy(renewed["server.pem"], live / "server.pem")
        shutil.copy(renewed["server.key"], live / "server.key")
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        after = before
        while time.time() < deadline and after == before:
            time.sleep(0.2)
            after = fingerprint(server.port)
        assert after != before, "SIGHUP did not load the new certificate"
        assert server.alive()
        # The connection made before the reload still works.
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        assert "TLS certificate reloaded" in server.log()
        ch.close()
        # A broken file on the next reload keeps the current certificate.
        (live / "server.pem").write_text("not a certificate")
        server.proc.send_signal(signal.SIGHUP)
        wait_for("the failed reload in the log", lambda: "TLS reload failed" in server.log(), timeout=10)
        assert server.alive() and fingerprint(server.port) == after
    finally:
        server.stop()


def test_unreadable_certificate_stops_the_start_naming_the_file(tmp_path, certs):
    proc = subprocess.run([os.path.join(BIN_DIR, "routing-service"), "--port", "0", "--data-dir", str(tmp_path), "--auth", "off",
                           "--metrics-port=-1", "--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", certs["server.key"]],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "missing.pem" in proc.stderr


def test_tls_from_the_environment_and_an_empty_variable_is_unset(tmp_path, certs):
    """LEADWIRE_TLS_CERT/KEY serve TLS as the flags do; set but empty (a compose file's `KEY:` with
    nothing after it) they mean plaintext, not a certificate at the path ''."""
    env = dict(os.environ, LEADWIRE_TLS_CERT=certs["server.pem"], LEADWIRE_TLS_KEY=certs["server.key"])
    server = ServerProcess("routing-service", ["--data-dir", str(tmp_path / "tls"), "--auth", "off", "--metrics-port=-1"], env=env)
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=read(certs["ca.pem"]))
        with grpc.secure_channel(server.address, creds) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert server.stop() == 0
    env = dict(os.environ, LEADWIRE_TLS_CERT="", LEADWIRE_TLS_KEY="", LEADWIRE_TLS_CA="", LEADWIRE_TLS_CLIENT_CA="")
    server = ServerProcess("routing-service", ["--data-dir", str(tmp_path / "plain"), "--auth", "off", "--metrics-port=-1"], env=env)
    try:
        with grpc.insecure_channel(server.address) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert server.stop() == 0


def test_scripts_up_tls_runs_the_whole_set_over_tls(tmp_path):
    """scripts/up --tls: certificates made, the services serve TLS and call each other over it, leadctl
    reaches them with the CA the printed lines name; a lead submitted gets its owner through routing."""
    from test_docs import DocSet

    s = DocSet(str(tmp_path), ["--tls"])
    try:
        assert any(l.startswith("export LEADWIRE_CACERT=") for l in s.pasted)
        r = s.run("""
leadctl person add --name "Анна Орлова" --login aorlova --email a@example.ru --role "Sales manager"
leadctl source create --name "Сайт" --channel web_form --default-role "Sales manager"
leadctl lead submit --source src-1 --name "Зоя Крылова" --email zoya@example.ru --subject "Течёт кран"
echo ---
leadctl lead show lead-1
""")
        assert r.returncode == 0, r.stdout + r.stderr + s.logs()
        # The owner came from routing, over TLS, during SubmitLead.
        assert "Анна Орлова" in r.stdout.split("---")[1], r.stdout
        # Plaintext is refused on the TLS port.
        plain = subprocess.run([os.path.join(BIN_DIR, "leadctl"), "health", "--address", "127.0.0.1:%d" % s.addresses[50051], "--timeout", "2"],
                               capture_output=True, text=True, env=s.env)
        assert plain.returncode != 0
    finally:
        s.down()
