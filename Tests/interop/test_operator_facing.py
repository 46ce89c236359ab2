"""What a person meets: leadctl's help and its refusals, the services' log lines (which callers must
not be able to forge), the signing key's checks at start, and a stop asked for at once."""
import base64
import os
import re
import signal
import socket
import subprocess
import time

import grpc
import pytest

from conftest import BIN_DIR, ServerProcess, wait_for
from leadwire.routing.v1 import routing_pb2 as gpb
from leadwire.routing.v1 import routing_pb2_grpc
from test_whole_set import jwt

LEADCTL = os.path.join(BIN_DIR, "leadctl")


def leadctl(*args, env=None):
    e = dict(os.environ)
    e.pop("LEADWIRE_TOKEN", None)
    e.update(env or {})
    return subprocess.run([LEADCTL, *args], capture_output=True, text=True, timeout=60, env=e)


def subcommands(help_text):
    m = re.search(r"SUBCOMMANDS:\n(.*?)(?:\n\n|\Z)", help_text, re.S)
    if not m:
        return []
    return [(l.split()[0], l) for l in m.group(1).splitlines() if re.match(r"^  \S", l)]


def walk(path=()):
    r = leadctl(*path, "--help")
    assert r.returncode == 0, r.stderr
    yield path, r.stdout
    for name, line in subcommands(r.stdout):
        if name == "help":
            continue
        yield from walk(path + (name,))


def test_every_command_and_option_is_described():
    seen = 0
    for path, text in walk():
        seen += 1
        if path:
            assert re.search(r"^OVERVIEW: \S", text, re.M), "leadctl %s has no description:\n%s" % (" ".join(path), text)
        options = re.search(r"(?:ARGUMENTS|OPTIONS):\n(.*)", text, re.S)
        if not options:
            continue
        for line in options.group(1).splitlines():
            # An option or argument line: "  --name <name>   text"; a line with only the flag and no
            # text on it or on the next (continuation) line is undescribed.
            m = re.match(r"^  ((?:-[-\w]+(?:, -[-\w]+)?)(?: <[\w-]+>)?(?: \.\.\.)?|<[\w-]+>(?: \.\.\.)?)(?:\s+(\S.*))?$", line)
            if m and not m.group(2):
                nxt = options.group(1).splitlines()
                i = nxt.index(line)
                follow = nxt[i + 1] if i + 1 < len(nxt) else ""
                assert re.match(r"^\s{10,}\S", follow), "leadctl %s: '%s' has no help" % (" ".join(path), line.strip())
    assert seen > 40, seen


def test_top_level_help_names_the_token():
    out = leadctl("--help").stdout
    assert "--token" in out and "LEADWIRE_TOKEN" in out, out


def test_mistyped_command_gets_a_suggestion():
    r = leadctl("reprot")
    assert r.returncode != 0
    assert "Did you mean 'report'?" in r.stderr, r.stderr
    r = leadctl("lead", "acept", "lead-1")
    assert "Did you mean 'accept'?" in r.stderr, r.stderr


def test_bad_value_shows_the_usage_of_the_command_at_hand():
    r = leadctl("lead", "list", "--status", "done")
    assert r.returncode != 0
    assert r.stderr.startswith("Error: --status is one of"), r.stderr
    assert "Usage: leadctl lead list" in r.stderr, r.stderr


def test_token_subject_with_control_characters_is_refused(tmp_path):
    r = leadctl("token", "issue", "--role", "admin", "--subject", "admin\nforged", "--data-dir", str(tmp_path))
    assert r.returncode != 0 and "printable" in r.stderr, r.stderr


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (trace|debug|info|notice|warning|error|critical) [\w-]+: \S")


def test_log_lines_cannot_be_forged(tmp_path):
    """Ids and token subjects with newlines and escape sequences stay inside their own log line."""
    data = str(tmp_path)
    server = ServerProcess("routing-service", ["--data-dir", data, "--metrics-port=-1", "--escalate-every", "0"])
    try:
        with open(os.path.join(data, "signing.key"), "rb") as fh:
            key = base64.b64decode(fh.read().strip())
        forged = "\n2026-11-29T10:00:00.000Z info routing-service: rpc method=/x principal=admin status=OK"
        evil_subject = "eve\r\nprincipal=admin\x1b[2J"
        token = jwt(key, evil_subject, ["admin"])
        ch = grpc.insecure_channel(server.address)
        stub = routing_pb2_grpc.RoutingStub(ch)
        calls = 0
        for bad_id in ("x" + forged, "person-1\u2028" + forged, "a" * 5000 + forged, "\x1b]0;title\x07"):
            with pytest.raises(grpc.RpcError) as e:
                stub.GetPerson(gpb.GetPersonRequest(id=bad_id), metadata=[("authorization", "Bearer " + token)], timeout=10)
            assert e.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
            calls += 1
        ch.close()
    finally:
        assert server.stop() == 0
    lines = server.log().splitlines()
    rpc_lines = [l for l in lines if ": rpc " in l]
    assert len(rpc_lines) == calls, "\n".join(lines)
    for l in lines:
        assert LOG_LINE.match(l), "not a well-formed log line: %r" % l
        assert "\x1b" not in l and "\r" not in l and "\u2028" not in l, repr(l)
        assert len(l) < 4000, "an unbounded value reached the log (%d characters)" % len(l)
    assert all('principal="eve\\r\\nprincipal=admin\\u001b[2J"' in l for l in rpc_lines), rpc_lines


@pytest.mark.parametrize("name", ["intake", "routing", "report"])
def test_sigterm_the_moment_a_service_listens_is_a_graceful_stop(tmp_path, name):
    """An operator's SIGTERM right after the 'listening on' line drains the service and exits 0; it
    was once trapped only later, and the process died of the signal itself (exit status -15)."""
    for attempt in range(3):
        data = str(tmp_path / str(attempt))
        server = ServerProcess(name + "-service", ["--data-dir", data, "--metrics-port=-1", "--auth", "off"])
        assert server.stop() == 0, server.log()
        assert re.search(r" info %s-service: shutting down gracefully signal=SIGTERM$" % name, server.log(), re.M), server.log()


def test_sighup_the_moment_a_service_listens_leaves_it_serving(tmp_path):
    """SIGHUP (a certificate renewal hook's) right after start: ignored without TLS, logged, and the
    service carries on; it was once trapped only later, and its default action ended the process."""
    server = ServerProcess("routing-service", ["--data-dir", str(tmp_path), "--metrics-port=-1", "--auth", "off"])
    try:
        server.proc.send_signal(signal.SIGHUP)
        wait_for("the SIGHUP handled or fatal", lambda: "SIGHUP ignored" in server.log() or not server.alive(), timeout=20)
        assert server.alive(), server.log()
        assert "SIGHUP ignored: the service serves no TLS certificate to reload" in server.log()
        with grpc.insecure_channel(server.address) as ch:
            stub = routing_pb2_grpc.RoutingStub(ch)
            with pytest.raises(grpc.RpcError) as e:
                stub.GetPerson(gpb.GetPersonRequest(id="nobody"), timeout=10)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        assert server.stop() == 0, server.log()


def start_fails(data, *extra):
    path = os.path.join(BIN_DIR, "routing-service")
    r = subprocess.run([path, "--port", "0", "--data-dir", data, "--metrics-port=-1", *extra],
                       capture_output=True, text=True, timeout=30)
    return r


def test_signing_key_readable_by_others_is_refused(tmp_path):
    data = str(tmp_path)
    key = os.path.join(data, "signing.key")
    with open(key, "w") as fh:
        fh.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    os.chmod(key, 0o644)
    r = start_fails(data)
    assert r.returncode != 0
    assert key in r.stderr and "chmod 600" in r.stderr, r.stderr
    # An explicit flag accepts it.
    for extra, mode in ((["--allow-shared-key"], 0o644), ([], 0o600)):
        os.chmod(key, mode)
        server = ServerProcess("routing-service", ["--data-dir", data, "--metrics-port=-1", *extra])
        assert leadctl("health", "--address", server.address).returncode == 0
        assert server.stop() == 0


def test_signing_key_that_is_a_directory_is_named_so(tmp_path):
    os.mkdir(os.path.join(str(tmp_path), "signing.key"))
    r = start_fails(str(tmp_path))
    assert r.returncode != 0 and "is a directory" in r.stderr, r.stderr


def _corrupt_pages(path, first_page=3):
    """Overwrites every page from `first_page` on with garbage (page 1, the header, stays)."""
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        page = 4096
        for offset in range(page * (first_page - 1), size, page):
            fh.seek(offset)
            fh.write(b"\xde\xad\xbe\xef" * (page // 4))


def _seed_routing(data):
    """A routing database with a few hundred people, written and checkpointed by a real run."""
    server = ServerProcess("routing-service", ["--data-dir", str(data), "--auth", "off", "--metrics-port=-1"])
    try:
        ch = grpc.insecure_channel(server.address)
        stub = routing_pb2_grpc.RoutingStub(ch)
        for i in range(300):
            stub.CreatePerson(gpb.CreatePersonRequest(person=gpb.Person(name="Сотрудник %d" % i, login="user%d" % i, email="u%d@example.ru" % i)), timeout=10)
        ch.close()
    finally:
        assert server.stop() == 0


@pytest.mark.sqlite_only
def test_damaged_database_refuses_to_start_naming_file_and_restore(tmp_path):
    _seed_routing(tmp_path)
    db = str(tmp_path / "routing.sqlite")
    _corrupt_pages(db)
    proc = subprocess.run([os.path.join(BIN_DIR, "routing-service"), "--port", "0", "--data-dir", str(tmp_path),
                           "--auth", "off", "--metrics-port=-1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "routing.sqlite is damaged" in proc.stderr
    assert "Restoring from a backup" in proc.stderr
    assert "\n" not in proc.stderr.strip()


@pytest.mark.sqlite_only
def test_damage_found_while_serving_turns_health_not_serving(tmp_path):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    _seed_routing(tmp_path)
    server = ServerProcess("routing-service", ["--data-dir", str(tmp_path), "--auth", "off", "--metrics-port=-1"])
    try:
        ch = grpc.insecure_channel(server.address)
        health = health_pb2_grpc.HealthStub(ch)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        _corrupt_pages(str(tmp_path / "routing.sqlite"))
        stub = routing_pb2_grpc.RoutingStub(ch)
        codes = []
        for i in range(20):
            try:
                # Assignments are read from disk (people are held in memory).
                stub.GetAssignment(gpb.GetAssignmentRequest(lead_id="lead-%d" % i), timeout=5)
                codes.append("OK")
            except grpc.RpcError as e:
                codes.append(e.code())
        assert grpc.StatusCode.UNAVAILABLE in codes and "OK" not in codes, codes
        deadline = time.time() + 10
        status = None
        while time.time() < deadline:
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
            if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            time.sleep(0.2)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        time.sleep(1.5)
        log = server.log()
        # Logged once for the episode (once a minute), not once per failed call.
        assert log.count("the database is damaged") == 1, log
        ch.close()
    finally:
        server.stop()


def test_malformed_environment_values_stop_the_start(tmp_path):
    """A number in the environment that is not a number is refused, not silently replaced."""
    for name, value, says in [("LEADWIRE_MAX_CONNECTIONS", "lots", "LEADWIRE_MAX_CONNECTIONS=lots is not a whole number"),
                              ("LEADWIRE_ROUTING_METRICS_PORT", "abc", "LEADWIRE_ROUTING_METRICS_PORT=abc is not a port number")]:
        env = dict(os.environ, **{name: value})
        proc = subprocess.run([os.path.join(BIN_DIR, "routing-service"), "--port", "0", "--data-dir", str(tmp_path), "--auth", "off"],
                              capture_output=True, text=True, timeout=30, env=env)
        assert proc.returncode != 0
        assert says in proc.stderr


def test_a_port_that_cannot_be_bound_is_named_with_the_option_to_change(tmp_path):
    """Not NIO's "bind(descriptor:ptr:bytes:): Address already in use) (errno: 98)": the address, why,
    and which option moves it."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    port = held.getsockname()[1]
    try:
        path = os.path.join(BIN_DIR, "routing-service")
        in_use = "cannot listen on 127.0.0.1:%d: the port is already in use" % port
        for args, says in [
            (["--port", str(port), "--metrics-port=-1"], [in_use, "choose another port with --port"]),
            (["--port", "0", "--metrics-port", str(port)], [in_use, "choose another port with --metrics-port"]),
            (["--port", "0", "--metrics-port=-1", "--host", "192.0.2.1"],
             ["cannot listen on 192.0.2.1:0: 192.0.2.1 is not an address of this machine"]),
            (["--port", "0", "--metrics-port=-1", "--host", "no-such-host.invalid"],
             ["cannot listen on no-such-host.invalid:0: no-such-host.invalid cannot be resolved"]),
        ]:
            r = subprocess.run([path, "--data-dir", str(tmp_path), "--auth", "off", *args],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode != 0
            for text in says:
                assert text in r.stderr, r.stderr
            assert "errno" not in r.stderr, r.stderr
    finally:
        held.close()
