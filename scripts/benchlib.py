"""What the bench scripts share: the project's venv, a process's CPU time, gRPC framing, ports, a
server started on a free port, and h2load run to completion with every answer checked."""
import contextlib
import os
import re
import socket
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CLK_TCK = os.sysconf("SC_CLK_TCK")
# h2load sends these with every request so that a gRPC server takes it for a call.
# How every release binary is built (scripts/up and the Dockerfile build the same way): the Swift
# runtime linked in. Switching the flag recompiles everything, so all builds share it.
RELEASE_BUILD = ["swift", "build", "-c", "release", "--static-swift-stdlib"]
GRPC_HEADERS = ["-H", "content-type: application/grpc", "-H", "te: trailers"]


def use_project_venv():
    """Runs the calling script again under the project's venv (grpcio, grpc_tools), if there is one
    and it is not already the interpreter. Call it before importing anything from the venv."""
    venv = os.path.join(ROOT, ".venv")
    python = os.path.join(venv, "bin", "python")
    if os.path.exists(python) and os.path.realpath(sys.prefix) != os.path.realpath(venv):
        os.execv(python, [python] + sys.argv)


def cpu_seconds(pid):
    """User plus system CPU time a process has used so far (from /proc)."""
    with open("/proc/%d/stat" % pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def grpc_frame(payload):
    """One uncompressed gRPC message: flag byte, 4-byte big-endian length, the bytes."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on 127.0.0.1:%d after %d s" % (port, timeout))


@contextlib.contextmanager
def listening(args):
    """Starts a server (its `args` ask for `--port 0`) and yields the process and the port from its
    'listening on' line; stops it with SIGTERM after."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            m = re.search(r"listening on \S*:(\d+)", line)
            if m:
                break
        else:
            raise RuntimeError("%s did not start (exit status %s)" % (args[0], proc.wait()))
        yield proc, int(m.group(1))
    finally:
        proc.terminate()
        proc.wait()


def h2load(url, body_path, conns, streams, seconds=None, calls=None, grpc=True, extra=()):
    """Runs h2load on one thread for `seconds` or for `calls` requests and returns its output and the
    requests done; raises unless every request done was answered 2xx."""
    cmd = ["h2load", "-c", str(conns), "-m", str(streams), "-t", "1", "-d", body_path]
    cmd += ["-D", str(seconds)] if seconds is not None else ["-n", str(calls)]
    cmd += (GRPC_HEADERS if grpc else []) + list(extra) + [url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    done = int(re.search(r"requests: \d+ total, \d+ started, (\d+) done", out).group(1))
    ok = re.search(r"status codes: (\d+) 2xx", out)
    if done == 0 or not ok or int(ok.group(1)) != done:
        raise RuntimeError("not every request was answered 2xx:\n%s" % out)
    return out, done
