"""A throwaway PostgreSQL cluster for tests: initdb into a temporary directory (as the `postgres`
user when run as root, since PostgreSQL refuses to run as root), pg_ctl on a free port on
127.0.0.1, trust authentication, removed on stop.

As a command (scripts/test uses it for the Swift store suites on PostgreSQL):
    python3 Tests/interop/pgcluster.py start     prints "URL DIRECTORY" and leaves it running
    python3 Tests/interop/pgcluster.py stop DIR  stops it and removes the directory
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def _bin(name):
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/" + name))
    if not candidates:
        raise RuntimeError("%s not found: install PostgreSQL (scripts/install-deps does)" % name)
    return candidates[-1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(args):
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", "postgres", "--"] + args


class Cluster:
    def __init__(self, directory=None, port=None, settings=()):
        self.dir = directory or tempfile.mkdtemp(prefix="leadwire-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        self.port = port or free_port()
        self.settings = list(settings)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o755)

    def init(self, extra=()):
        subprocess.run(_as_postgres([_bin("initdb"), "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                                     "--locale=C.UTF-8", "--no-sync", *extra]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def start(self):
        options = "-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=300 %s" % (
            self.port, self.dir, " ".join("-c " + s for s in self.settings))
        subprocess.run(_as_postgres([_bin("pg_ctl"), "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "60",
                                     "start"]), check=True, stdout=subprocess.DEVNULL)
        return self

    def stop(self, mode="fast"):
        subprocess.run(_as_postgres([_bin("pg_ctl"), "-D", self.data, "-m", mode, "-w", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as fh:
                return int(fh.readline())
        except (OSError, ValueError):
            return None

    def url(self, db="postgres"):
        return "postgres://postgres@127.0.0.1:%d/%s" % (self.port, db)

    def psql(self, sql, db="postgres"):
        out = subprocess.run([_bin("psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", self.url(db), "-c", sql],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def create_database(self, name):
        if self.psql("SELECT 1 FROM pg_database WHERE datname = '%s'" % name) != "1":
            self.psql('CREATE DATABASE "%s"' % name)
        return self.url(name)

    def remove(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def main(argv):
    if len(argv) >= 2 and argv[1] == "start":
        c = Cluster().init().start()
        # Wait until it answers on TCP (pg_ctl -w waits for the socket).
        for _ in range(100):
            try:
                c.psql("SELECT 1")
                break
            except subprocess.CalledProcessError:
                time.sleep(0.1)
        print(c.url(), c.dir)
        return 0
    if len(argv) == 3 and argv[1] == "stop":
        c = Cluster.__new__(Cluster)
        c.dir = argv[2]
        c.data = os.path.join(c.dir, "data")
        c.remove()
        return 0
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv))
