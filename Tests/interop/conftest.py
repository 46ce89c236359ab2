"""Fixtures for the cross-process tests: real server processes on 127.0.0.1, real grpcio clients.

Python stubs are generated from Debian's grpc-proto at session start (not committed). The protos
are copied under the module name `wire_interop` because a generated `grpc/` package would shadow
grpcio itself; the proto *package* stays `grpc.testing`, so the wire names are the standard ones.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN_DIR = os.environ.get("WIRE_BIN_DIR", os.path.join(ROOT, ".build", "debug"))
GRPC_PROTO = os.environ.get("GRPC_PROTO_DIR", "/usr/share/grpc-proto")

_stub_dir = tempfile.mkdtemp(prefix="wire-interop-stubs-")


def _generate_stubs():
    from grpc_tools import protoc

    pkg = os.path.join(_stub_dir, "wire_interop")
    os.makedirs(pkg)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    for name in ("empty", "messages", "test"):
        with open(os.path.join(GRPC_PROTO, "grpc", "testing", name + ".proto")) as fh:
            text = fh.read()
        text = text.replace('import "grpc/testing/', 'import "wire_interop/')
        with open(os.path.join(pkg, name + ".proto"), "w") as fh:
            fh.write(text)
    args = ["protoc", "-I" + _stub_dir, "-I" + os.path.dirname(protoc.__file__) + "/_proto",
            "--python_out=" + _stub_dir, "--grpc_python_out=" + _stub_dir]
    args += ["wire_interop/%s.proto" % n for n in ("empty", "messages", "test")]
    if protoc.main(args) != 0:
        raise RuntimeError("grpc_tools.protoc failed")
    # Our own API, straight from proto/ (its package path cannot shadow anything).
    ours = ["leadwire/intake/v1/intake.proto", "leadwire/routing/v1/routing.proto", "leadwire/report/v1/report.proto",
            "leadwire/messages/v1/messages.proto", "leadwire/catalog/v1/catalog.proto"]
    if protoc.main(["protoc", "-I" + os.path.join(ROOT, "proto"), "--python_out=" + _stub_dir, "--grpc_python_out=" + _stub_dir, *ours]) != 0:
        raise RuntimeError("grpc_tools.protoc failed for proto/leadwire")
    sys.path.insert(0, _stub_dir)


_generate_stubs()


# LEADWIRE_TEST_POSTGRES=1 (scripts/test's PostgreSQL pass): every service the suite starts keeps
# its data in a throwaway PostgreSQL cluster instead of SQLite files — one database per data
# directory, each service in its own schema, as a deployment would have it.
ON_POSTGRES = os.environ.get("LEADWIRE_TEST_POSTGRES") == "1"
_pg = None


def postgres_cluster():
    global _pg
    if _pg is None:
        from pgcluster import Cluster
        _pg = Cluster().init().start()
    return _pg


def wait_for(what, check, timeout=30):
    """check()'s first truthy answer, asked every 0.1 s; an AssertionError naming `what` (and the
    last answer) after `timeout` seconds. For what a service does after it has answered a call (a
    delivery marked, a log line, a connection it has seen close): waited for, never slept on."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def database_for(data_dir):
    """The PostgreSQL database of a data directory (made on first use)."""
    import hashlib
    name = "lw_" + hashlib.sha1(os.path.realpath(data_dir).encode()).hexdigest()[:16]
    return postgres_cluster().create_database(name)


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: reads or damages a service's SQLite file itself (not run on PostgreSQL)")
    config.addinivalue_line("markers", "postgres_only: replicas and failover on PostgreSQL (run in the PostgreSQL pass only)")


def pytest_collection_modifyitems(config, items):
    unwanted = "sqlite_only" if ON_POSTGRES else "postgres_only"
    kept = [i for i in items if i.get_closest_marker(unwanted) is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_stub_dir, ignore_errors=True)
    if _pg is not None:
        _pg.remove()


_servers = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test shows the last lines of every server's log (they never go to the runner's
    output otherwise)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for server in _servers:
            try:
                tail = "".join(open(server.log_path, errors="replace").readlines()[-40:])
            except OSError:
                continue
            report.sections.append(("log of %s (pid %d, last 40 lines)" % (server.binary, server.pid), tail))


class ServerProcess:
    """A server binary started on port 0; the port is read from its 'listening on' line. Its log
    (stderr) goes to a file, never a pipe: a pipe nobody drains would fill up and block the server."""

    def __init__(self, binary, args=(), env=None, port=0):
        self.binary = binary
        path = os.path.join(BIN_DIR, binary)
        if not os.path.exists(path):
            raise RuntimeError("%s not built: run swift build first" % path)
        args = list(args)
        if ON_POSTGRES and binary.endswith("-service") and "--database" not in args:
            data_dir = args[args.index("--data-dir") + 1] if "--data-dir" in args else (env or os.environ).get("LEADWIRE_DATA_DIR")
            if data_dir:
                args += ["--database", database_for(data_dir)]
        # A fixed port chosen earlier as free can be held for a moment by another process's
        # outgoing connection (its ephemeral source port) or a listener on port 0: wait and try
        # again rather than fail the test on the machine's port allocation.
        # ("the port is already in use" is the service's own words for it, see ListenError.)
        for _ in range(20):
            self._spawn(path, port, args, env)
            if self.port is not None:
                break
            if port == 0 or "the port is already in use" not in self.log():
                break
            time.sleep(0.5)
        if self.port is None:
            raise RuntimeError("%s did not start: %s" % (binary, self.log()))
        self.address = "127.0.0.1:%d" % self.port
        _servers.append(self)
        del _servers[:-50]

    def _spawn(self, path, port, args, env):
        fd, self.log_path = tempfile.mkstemp(prefix=self.binary + "-", suffix=".log", dir=_stub_dir)
        with os.fdopen(fd, "w") as log:
            self.proc = subprocess.Popen([path, "--port", str(port), *args], stdout=subprocess.PIPE,
                                         stderr=log, text=True, env=env)
        deadline = time.time() + 30
        self.port = None
        self.metrics_url = None
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"metrics on (http://\S+)", line)
            if m:
                self.metrics_url = m.group(1)
            m = re.search(r"listening on [\d.]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            self.proc.kill()
            self.proc.wait()

    def log(self):
        with open(self.log_path) as fh:
            return fh.read()

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def interop_server():
    server = ServerProcess("wire-interop-server")
    yield server
    assert server.alive(), "the server died during the tests"
    assert server.stop() == 0


def _service(tmp_path_factory, name):
    """One service with its own data directory and authentication off (the access rules have their
    own tests in test_whole_set.py)."""
    data = tmp_path_factory.mktemp(name + "-data")
    server = ServerProcess(name + "-service", ["--data-dir", str(data), "--auth", "off"])
    server.data_dir = str(data)
    yield server
    assert server.alive(), "%s-service died during the tests" % name
    assert server.stop() == 0


@pytest.fixture(scope="module")
def intake_server(tmp_path_factory):
    yield from _service(tmp_path_factory, "intake")


@pytest.fixture(scope="module")
def routing_server(tmp_path_factory):
    yield from _service(tmp_path_factory, "routing")


@pytest.fixture(scope="module")
def report_server(tmp_path_factory):
    yield from _service(tmp_path_factory, "report")


def _client(server, make_stub):
    import grpc

    ch = grpc.insecure_channel(server.address)
    grpc.channel_ready_future(ch).result(timeout=10)
    yield make_stub(ch)
    ch.close()


@pytest.fixture
def routing(routing_server):
    from leadwire.routing.v1 import routing_pb2_grpc

    yield from _client(routing_server, routing_pb2_grpc.RoutingStub)


@pytest.fixture
def report(report_server):
    from leadwire.report.v1 import report_pb2_grpc

    yield from _client(report_server, report_pb2_grpc.ReportStub)


@pytest.fixture
def intake(intake_server):
    from leadwire.intake.v1 import intake_pb2_grpc

    yield from _client(intake_server, intake_pb2_grpc.IntakeStub)


@pytest.fixture
def channel(interop_server):
    import grpc

    ch = grpc.insecure_channel(interop_server.address)
    grpc.channel_ready_future(ch).result(timeout=10)
    yield ch
    ch.close()


@pytest.fixture
def stub(channel):
    from wire_interop import test_pb2_grpc

    return test_pb2_grpc.TestServiceStub(channel)
