"""Docs that run: every ```sh block of README.md and docs/*.md, executed as written (in order, with
bash -e) against a set that scripts/up started, in a working folder whose ./var is the set's data
directory. The lines scripts/up prints for the reader to paste (export PATH=…, LEADWIRE_TOKEN=…) are
pasted before each block, as a reader would. The only change made to a block: the three default
addresses become the test's free ports. A block that cannot run says why in a
`<!-- doc-test: skip (reason) -->` comment right above it.
"""
import glob
import os
import re
import socket
import subprocess

import pytest

from conftest import BIN_DIR, ROOT

BLOCK = re.compile(r"(?:<!--\s*doc-test:\s*skip\s*\(([^)]*)\)\s*-->\s*\n)?```(sh|bash)\n(.*?)```", re.S)


def doc_blocks(path):
    text = open(path, encoding="utf-8").read()
    for m in BLOCK.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        yield line, m.group(1), m.group(3)


def _free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class DocSet:
    """The set as scripts/up starts it (prebuilt binaries), and what it told the reader to paste."""

    def __init__(self, work, args=()):
        self.work = work
        self.data = os.path.join(work, "var")
        ports = _free_ports(6)
        self.addresses = {50051: ports[0], 50052: ports[1], 50053: ports[2]}
        self.env = dict(os.environ)
        self.env.update({
            "LEADWIRE_BIN_DIR": os.path.abspath(BIN_DIR),
            "LEADWIRE_DATA_DIR": self.data,
            "LEADWIRE_INTAKE_PORT": str(ports[0]), "LEADWIRE_ROUTING_PORT": str(ports[1]),
            "LEADWIRE_REPORT_PORT": str(ports[2]), "LEADWIRE_INTAKE_METRICS_PORT": str(ports[3]),
            "LEADWIRE_ROUTING_METRICS_PORT": str(ports[4]), "LEADWIRE_REPORT_METRICS_PORT": str(ports[5]),
        })
        # The reader's shell knows nothing of ours: no token, no addresses, the venv not on PATH.
        for k in ("LEADWIRE_TOKEN", "LEADWIRE_INTAKE_ADDR", "LEADWIRE_ROUTING_ADDR", "LEADWIRE_REPORT_ADDR", "LEADWIRE_CACERT"):
            self.env.pop(k, None)
        self.env["PATH"] = ":".join(p for p in self.env.get("PATH", "").split(":") if ".venv" not in p)
        up = subprocess.run([os.path.join(ROOT, "scripts", "up"), *args], env=self.env, cwd=work, capture_output=True,
                            text=True, timeout=180)
        self.up_output = up.stdout + up.stderr
        assert up.returncode == 0, "scripts/up failed:\n" + self.up_output
        self.pasted = [l for l in up.stdout.splitlines() if l.startswith("export ")]

    def run(self, script):
        for default, port in self.addresses.items():
            script = script.replace("127.0.0.1:%d" % default, "127.0.0.1:%d" % port)
        return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", "\n".join(self.pasted) + "\n" + script],
                              env=self.env, cwd=self.work, capture_output=True, text=True, timeout=120)

    def logs(self):
        out = []
        for path in sorted(glob.glob(os.path.join(self.data, "log", "*.log"))):
            with open(path, errors="replace") as fh:
                out.append("--- %s (last 30 lines)\n%s" % (os.path.basename(path), "".join(fh.readlines()[-30:])))
        return "\n".join(out)

    def down(self):
        subprocess.run([os.path.join(ROOT, "scripts", "down")], env=self.env, cwd=self.work, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def doc_set(tmp_path_factory):
    s = DocSet(str(tmp_path_factory.mktemp("docs-walkthrough")))
    yield s
    s.down()


def _run_blocks(doc_set, path):
    ran = 0
    for line, skip, script in doc_blocks(path):
        if skip is not None:
            assert skip.strip(), "%s:%d: a skipped block must say why" % (path, line)
            continue
        r = doc_set.run(script)
        assert r.returncode == 0, "%s:%d failed (exit %d):\n%s\n--- stdout\n%s\n--- stderr\n%s\n%s" % (
            os.path.relpath(path, ROOT), line, r.returncode, script, r.stdout, r.stderr, doc_set.logs())
        ran += 1
    return ran


def test_scripts_up_prints_lines_to_paste(doc_set):
    joined = "\n".join(doc_set.pasted)
    assert re.search(r'^export PATH=".*\.venv/bin:\$PATH"$', joined, re.M), doc_set.up_output
    assert re.search(r"^export LEADWIRE_TOKEN=[\w-]+\.[\w-]+\.[\w-]+$", joined, re.M), doc_set.up_output


def test_readme_walkthrough_runs_as_printed(doc_set):
    assert _run_blocks(doc_set, os.path.join(ROOT, "README.md")) >= 2
    # The first lead reached Anna, and tables name her, not only her id.
    r = doc_set.run("leadctl lead list")
    assert r.returncode == 0, r.stderr
    assert "Анна Орлова (person-1)" in r.stdout, r.stdout
    # The registration number works wherever a lead id does.
    number = re.search(r"L-\d{4}-\d{6}", r.stdout).group(0)
    shown = doc_set.run("leadctl lead show %s" % number)
    assert shown.returncode == 0 and number in shown.stdout, shown.stdout + shown.stderr


@pytest.mark.parametrize("doc", sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))))
def test_docs_blocks_run(doc_set, doc):
    _run_blocks(doc_set, os.path.join(ROOT, "docs", doc))


def test_docs_backup_made_copies(doc_set):
    # operations.md's backup block ran above (module order: README first, then docs): its copies exist.
    made = glob.glob(os.path.join(doc_set.data, "backup", "*.sqlite"))
    assert len(made) == 3, made
    assert os.path.exists(os.path.join(doc_set.data, "backup", "signing.key"))
