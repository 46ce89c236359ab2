"""Several replicas of each service on one PostgreSQL database, behind haproxy (h2c, health-checked
through GET /health on each replica's metrics port), driven by grpcio clients that retry with their
idempotency keys. Real processes killed with SIGKILL, a PostgreSQL server restarted under load, and
a streaming standby promoted after the primary is killed.

Run in scripts/test's PostgreSQL pass (LEADWIRE_TEST_POSTGRES=1); each test starts its own cluster.
"""
import concurrent.futures
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import grpc
import pytest

from conftest import ROOT, ServerProcess, wait_for
from leadwire.intake.v1 import intake_pb2 as ipb
from leadwire.intake.v1 import intake_pb2_grpc
from leadwire.routing.v1 import routing_pb2 as gpb
from leadwire.routing.v1 import routing_pb2_grpc
from pgcluster import Cluster, _as_postgres, _bin, free_port

pytestmark = pytest.mark.postgres_only

SERVICES = ("routing", "report", "intake")


class Haproxy:
    """haproxy in front of each service: one h2c frontend per service, its replicas as backend
    servers checked with GET /health on their metrics ports."""

    def __init__(self, workdir):
        self.dir = workdir
        self.ports = {svc: free_port() for svc in SERVICES}
        self.proc = None

    def start(self, replicas):
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        lines = ["global", "    maxconn 4000", "defaults", "    mode http", "    timeout connect 1s", "    timeout client 60s",
                 "    timeout server 60s", "    retries 3", "    option redispatch"]
        for svc in SERVICES:
            lines += ["frontend %s" % svc, "    bind 127.0.0.1:%d proto h2" % self.ports[svc], "    default_backend %s_replicas" % svc,
                      "backend %s_replicas" % svc, "    balance roundrobin", "    option httpchk GET /health",
                      "    http-check expect status 200", "    default-server inter 250ms fall 2 rise 2"]
            for i, r in enumerate(replicas[svc]):
                lines.append("    server r%d 127.0.0.1:%d proto h2 check port %d check-proto h1" % (i, r["port"], r["metrics"]))
        cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(cfg, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        check = subprocess.run([binary, "-c", "-f", cfg], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.log = open(os.path.join(self.dir, "haproxy.log"), "w")
        self.proc = subprocess.Popen([binary, "-db", "-f", cfg], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for("haproxy listens", lambda: all(listening(p) for p in self.ports.values()), timeout=10)

    def addr(self, svc):
        return "127.0.0.1:%d" % self.ports[svc]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class ReplicaSet:
    """N replicas of each service on one database URL, sharing a data directory (the signing key)."""

    def __init__(self, url, n=2):
        self.url = url
        self.dir = tempfile.mkdtemp(prefix="leadwire-replicas-")
        self.haproxy = Haproxy(self.dir)
        self.ports = {svc: [{"port": free_port(), "metrics": free_port()} for _ in range(n)] for svc in SERVICES}
        self.procs = {svc: [None] * n for svc in SERVICES}

    def start_replica(self, svc, i):
        p = self.ports[svc][i]
        args = ["--data-dir", self.dir, "--database", self.url, "--auth", "off", "--metrics-port", str(p["metrics"])]
        if svc == "intake":
            args += ["--routing", self.haproxy.addr("routing"), "--report", self.haproxy.addr("report")]
        elif svc == "report":
            args += ["--intake", self.haproxy.addr("intake")]
        else:
            args += ["--escalate-every", "0"]
        self.procs[svc][i] = ServerProcess(svc + "-service", args, port=p["port"])

    def start(self):
        for svc in SERVICES:
            for i in range(len(self.ports[svc])):
                self.start_replica(svc, i)
        self.haproxy.start(self.ports)
        wait_for("haproxy sees every replica healthy", lambda: all(self.healthy(svc) for svc in SERVICES), timeout=20)
        return self

    def healthy(self, svc, i=None):
        indexes = [i] if i is not None else range(len(self.ports[svc]))
        return all(health(self.ports[svc][j]["metrics"]) == 200 for j in indexes)

    def stop(self):
        """Stops everything; then fails if a live replica did not stop cleanly on SIGTERM (one waiting
        for a lease must stop waiting)."""
        self.haproxy.stop()
        unclean = []
        for svc in reversed(SERVICES):
            for i, p in enumerate(self.procs[svc]):
                if p is not None and p.alive():
                    rc = p.stop(timeout=15)
                    if rc != 0:
                        unclean.append("%s-%d exited %s" % (svc, i, rc))
        shutil.rmtree(self.dir, ignore_errors=True)
        assert not unclean, unclean

    def stub(self, svc):
        ch = grpc.insecure_channel(self.haproxy.addr(svc))
        return {"intake": intake_pb2_grpc.IntakeStub, "routing": routing_pb2_grpc.RoutingStub}[svc](ch)


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def health(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL)


def retryable(e):
    """The outcomes a caller cannot tell from "not done": the replica was unreachable, the call timed
    out, or haproxy lost the replica mid-answer — which it reports either as a reset stream (grpcio:
    INTERNAL) or, when the replica dies between the answer's body and its trailers, by ending the
    stream without them (grpcio: UNKNOWN "Stream removed"). Never a status a replica sent."""
    return e.code() in RETRYABLE or (e.code() == grpc.StatusCode.UNKNOWN and (e.details() or "").startswith("Stream removed"))


def submit_with_retries(intake, source_id, key, outcomes, statuses, answered=None):
    """What a careful caller does: the same idempotency key until an answer, never a new one."""
    for _ in range(200):
        try:
            r = intake.SubmitLead(ipb.SubmitLeadRequest(source_id=source_id, idempotency_key=key,
                                                        applicant=ipb.Applicant(name="Client " + key, email=key + "@example.com"),
                                                        subject="Request " + key), timeout=10)
            outcomes[key] = r.lead
            if answered is not None:
                answered[key] = time.time()
            return
        except grpc.RpcError as e:
            statuses.append(e.code())
            assert retryable(e), (e.code(), e.details())
            time.sleep(0.05)
    raise AssertionError("no answer for " + key)


def setup_directory(s, people=7):
    routing = s.stub("routing")
    ids = [routing.CreatePerson(gpb.CreatePersonRequest(person=gpb.Person(name="P%d" % i, login="p%d-%s" % (i, uuid.uuid4().hex[:4]),
                                                                          roles=["Sales manager"]))).id for i in range(people)]
    src = s.stub("intake").CreateSource(ipb.CreateSourceRequest(source=ipb.Source(
        name="Site-" + uuid.uuid4().hex[:6], channel=ipb.CHANNEL_WEB_FORM, default_role="Sales manager", enabled=True)))
    return ids, src.id


def run_load(s, source_id, keys, during=None, workers=8, answered=None):
    intake = s.stub("intake")
    outcomes, statuses = {}, []
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(submit_with_retries, intake, source_id, k, outcomes, statuses, answered) for k in keys]
        if during:
            during()
        for f in futures:
            f.result()
    return outcomes, statuses


@pytest.fixture
def cluster():
    c = Cluster().init().start()
    yield c
    c.remove()


def test_sigkill_one_replica_of_each_under_load_loses_and_duplicates_nothing(cluster):
    s = ReplicaSet(cluster.create_database("leadwire")).start()
    try:
        people, source_id = setup_directory(s)
        keys = ["k-%04d" % i for i in range(2000)]
        answered, killed_at = {}, []

        def kill_one_of_each():
            wait_for("some leads answered", lambda: len(answered) >= 300)
            # The intake replica that runs the outbox relay, so its lease has to move.
            relay = [p for p in s.procs["intake"] if "now runs OutboxRelay" in p.log()]
            assert len(relay) == 1, "exactly one intake replica runs the relay"
            relay[0].stop(signal.SIGKILL)
            s.procs["routing"][0].stop(signal.SIGKILL)
            s.procs["report"][1].stop(signal.SIGKILL)
            killed_at.append(time.time())

        outcomes, statuses = run_load(s, source_id, keys, during=kill_one_of_each, answered=answered)
        assert len(outcomes) == len(keys)
        after = [k for k, t in answered.items() if t > killed_at[0]]
        assert len(after) >= 100, "the load went on through the kill (%d leads answered after it)" % len(after)
        # One lead per key, and the database holds exactly those.
        assert len({l.id for l in outcomes.values()}) == len(keys)
        assert len({l.registration_number for l in outcomes.values()}) == len(keys)
        assert int(cluster.psql("SELECT COUNT(*) FROM intake.leads", db="leadwire")) == len(keys)
        # Asking again with a key answers the same lead.
        intake = s.stub("intake")
        for k in keys[::50]:
            again = intake.SubmitLead(ipb.SubmitLeadRequest(source_id=source_id, idempotency_key=k,
                                                            applicant=ipb.Applicant(name="Client " + k, email=k + "@example.com"),
                                                            subject="Request " + k), timeout=10)
            assert again.lead.id == outcomes[k].id
        # The surviving relay delivers everything: every lead routed, fairly, and counted once by report.
        wait_for("every lead routed", lambda: cluster.psql(
            "SELECT COUNT(*) FROM intake.leads WHERE owner_id <> ''", db="leadwire") == str(len(keys)), timeout=60)
        owners = [int(n) for n in cluster.psql("SELECT COUNT(*) FROM intake.leads GROUP BY owner_id", db="leadwire").split()]
        assert len(owners) == len(people) and max(owners) - min(owners) <= 1, owners
        assert int(cluster.psql("SELECT COUNT(*) FROM routing.assignments", db="leadwire")) == len(keys)
        wait_for("report has every lead", lambda: cluster.psql(
            "SELECT COUNT(*) FROM report.leads", db="leadwire") == str(len(keys)), timeout=60)
        survivor = [p for p in s.procs["intake"] if p.alive()]
        assert len(survivor) == 1 and "now runs OutboxRelay" in survivor[0].log()
    finally:
        s.stop()


def test_postgres_restart_under_load_is_unavailable_then_serving_and_loses_nothing(cluster):
    s = ReplicaSet(cluster.create_database("leadwire"), n=1).start()
    try:
        people, source_id = setup_directory(s, people=3)
        intake = s.stub("intake")
        metrics = s.ports["intake"][0]["metrics"]

        def restart():
            time.sleep(0.5)
            cluster.stop("fast")
            wait_for("intake says NOT_SERVING", lambda: health(metrics) == 503, timeout=15)
            # Meanwhile a write is refused, never falsely accepted.
            direct = intake_pb2_grpc.IntakeStub(grpc.insecure_channel(s.procs["intake"][0].address))
            with pytest.raises(grpc.RpcError) as refused:
                direct.SubmitLead(ipb.SubmitLeadRequest(source_id=source_id, idempotency_key="while-down",
                                                        applicant=ipb.Applicant(name="X", email="x@example.com")), timeout=15)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
            time.sleep(1)
            cluster.start()
            wait_for("intake SERVING again", lambda: health(metrics) == 200, timeout=20)

        keys = ["r-%04d" % i for i in range(300)]
        outcomes, statuses = run_load(s, source_id, keys, during=restart, workers=4)
        assert grpc.StatusCode.UNAVAILABLE in statuses, "the load met the outage"
        assert len({l.id for l in outcomes.values()}) == len(keys)
        stored = set(cluster.psql("SELECT registration_number FROM intake.leads", db="leadwire").split())
        assert {l.registration_number for l in outcomes.values()} <= stored, "every acknowledged lead is there"
        assert len(stored) == len(keys) + (1 if cluster.psql(
            "SELECT COUNT(*) FROM intake.leads WHERE idempotency_key = 'while-down'", db="leadwire") == "1" else 0)
        r = intake.SubmitLead(ipb.SubmitLeadRequest(source_id=source_id, applicant=ipb.Applicant(name="After", email="a@example.com")))
        assert r.lead.registration_number
    finally:
        s.stop()


def test_promoted_standby_takes_over_through_the_multi_host_url(tmp_path):
    primary = Cluster().init().start()
    standby = Cluster()
    try:
        primary.create_database("leadwire")
        subprocess.run(_as_postgres([_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                                     "-D", standby.data, "-R", "-X", "stream", "--no-sync",
                                     "--checkpoint=fast"]), check=True, capture_output=True)
        standby.start()
        # Synchronous replication: a COMMIT returns once the standby has the WAL, so an answered
        # write survives losing the primary (docs/operations.md, "Failover").
        primary.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        primary.psql("SELECT pg_reload_conf()")
        wait_for("the standby streams synchronously", lambda: primary.psql(
            "SELECT sync_state FROM pg_stat_replication") == "sync", timeout=20)
        url = "postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/leadwire?target_session_attrs=read-write" % (primary.port, standby.port)
        s = ReplicaSet(url, n=1).start()
        try:
            people, source_id = setup_directory(s, people=3)

            def fail_over():
                wait_for("some leads answered", lambda: len(answered) >= 100)
                # The machine dies: the postmaster and every backend at once.
                pid = primary.pid()
                children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
                for p in [pid] + [int(c) for c in children]:
                    os.kill(int(p), signal.SIGKILL)
                failed_at.append(time.time())
                subprocess.run(_as_postgres([_bin("pg_ctl"), "-D", standby.data, "-w", "promote"]), check=True, capture_output=True)

            keys = ["f-%04d" % i for i in range(600)]
            answered, failed_at = {}, []
            outcomes, statuses = run_load(s, source_id, keys, during=fail_over, workers=4, answered=answered)
            assert len([k for k, t in answered.items() if t > failed_at[0]]) >= 100, "the load went on through the failover"
            stored = set(standby.psql("SELECT registration_number FROM intake.leads", db="leadwire").split())
            assert {l.registration_number for l in outcomes.values()} <= stored, "every acknowledged lead survived the failover"
            assert len({l.id for l in outcomes.values()}) == len(keys)
            assert standby.psql("SELECT pg_is_in_recovery()") == "f"
        finally:
            s.stop()
    finally:
        standby.remove()
        primary.remove()


def test_scripts_up_scale_2_runs_the_replicated_layout(monkeypatch):
    """scripts/up --scale 2: PostgreSQL, two replicas of each and haproxy on the usual ports; a
    replica killed, the set goes on; scripts/down stops every process it started."""
    from test_docs import DocSet

    # PostgreSQL runs as its own user: its directory must be reachable by it (pytest's are not).
    work = tempfile.mkdtemp(prefix="leadwire-scale-")
    os.chmod(work, 0o755)
    monkeypatch.setenv("LEADWIRE_POSTGRES_PORT", str(free_port()))
    pids = {}
    try:
        s = DocSet(work, args=("--scale", "2"))
        assert "through haproxy: 2 replicas" in s.up_output, s.up_output
        pids = {os.path.basename(p): int(open(p).read()) for p in glob.glob(os.path.join(s.data, "run", "*.pid"))}
        assert sorted(pids) == sorted(["haproxy.pid"] + ["%s-%d.pid" % (svc, i) for svc in SERVICES for i in (1, 2)]), pids
        r = s.run("leadctl person add --name 'Анна Орлова' --login aorlova --role 'Sales manager'\n"
                  "src=$(leadctl source create --name Site --default-role 'Sales manager')\n"
                  "echo \"$src\" > src.txt\n"
                  "leadctl lead submit --source \"$src\" --name Ivan --email ivan@example.com")
        assert r.returncode == 0, r.stdout + r.stderr + s.logs()
        os.kill(pids["intake-1.pid"], signal.SIGKILL)
        os.kill(pids["routing-2.pid"], signal.SIGKILL)
        time.sleep(3)  # haproxy's checks (1 s, two failures) take the dead ones out
        for i in range(5):
            r = s.run("leadctl lead submit --source \"$(cat src.txt)\" --name 'After %d' --email after%d@example.com" % (i, i))
            assert r.returncode == 0, r.stdout + r.stderr
        listed = s.run("leadctl lead list")
        assert listed.returncode == 0 and listed.stdout.count("Анна Орлова (person-1)") == 6, listed.stdout + listed.stderr
    finally:
        # Also when scripts/up itself failed half-way: whatever it started is stopped.
        down = subprocess.run([os.path.join(ROOT, "scripts", "down")], env=dict(os.environ, LEADWIRE_DATA_DIR=os.path.join(work, "var")),
                              capture_output=True, text=True, timeout=120)
        shutil.rmtree(work, ignore_errors=True)
    assert "did not stop" not in down.stdout + down.stderr, down.stdout + down.stderr
    for name, pid in pids.items():
        assert not os.path.exists("/proc/%d" % pid) or open("/proc/%d/stat" % pid).read().split()[2] == "Z", name
    assert not os.path.exists(os.path.join(work, "var", "postgres", "postmaster.pid"))
