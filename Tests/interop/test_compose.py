"""compose.yaml checked without a Docker engine: against the Compose Specification's JSON schema
(from Debian's docker-compose package, fetched by scripts/install-deps), and for what the set needs:
every service built from our Dockerfile, health-checked over gRPC, with its own data volume, the
shared key volume, the default ports, and the products the Dockerfile builds."""
import os
import re

import jsonschema
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCHEMA = os.environ.get("LEADWIRE_COMPOSE_SCHEMA",
                        os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "leadwire", "compose_spec.json"))


def load():
    with open(os.path.join(ROOT, "compose.yaml")) as fh:
        return yaml.safe_load(fh)


def test_compose_file_follows_the_compose_specification():
    assert os.path.exists(SCHEMA), "compose schema missing at %s: run scripts/install-deps" % SCHEMA
    import json
    with open(SCHEMA) as fh:
        schema = json.load(fh)
    doc = load()
    # The schema names draft 2019-09 with a trailing "#" that jsonschema does not recognise: say it explicitly.
    validator = jsonschema.Draft201909Validator(schema)
    validator.validate(doc)
    # The validator really checks: a wrong type is refused.
    broken = dict(doc, services=dict(doc["services"], intake=dict(doc["services"]["intake"], ports="50051")))
    try:
        validator.validate(broken)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("schema accepted ports given as a string")


def test_services_volumes_ports_and_health_checks():
    doc = load()
    ports = {"intake": "50051", "routing": "50052", "report": "50053"}
    assert {n for n, s in doc["services"].items() if "profiles" not in s} == set(ports)
    for name, svc in doc["services"].items():
        if "profiles" in svc:
            continue
        assert svc["build"] == "."
        assert svc["command"][0] == name + "-service"
        assert any(p.endswith(":%s:%s" % (ports[name], ports[name])) for p in svc["ports"])
        assert "%s-data:/data" % name in svc["volumes"] and "keys:/keys" in svc["volumes"]
        assert svc["environment"]["LEADWIRE_KEY_FILE"] == "/keys/signing.key"
        test = svc["healthcheck"]["test"]
        assert test[:3] == ["CMD", "leadctl", "health"] and test[-1].endswith(":" + ports[name])
    intake = doc["services"]["intake"]["command"]
    assert intake[intake.index("--routing") + 1] == "routing:50052" and intake[intake.index("--report") + 1] == "report:50053"
    assert set(doc["volumes"]) == {"intake-data", "routing-data", "report-data", "keys", "postgres-data"}


def test_replicas_profile_runs_each_service_twice_on_postgres_behind_haproxy():
    doc = load()
    replicas = {n: s for n, s in doc["services"].items() if "replicas" in s.get("profiles", [])}
    assert set(replicas) == {"postgres", "haproxy", "intake-replica", "routing-replica", "report-replica"}
    for name in ("intake", "routing", "report"):
        svc = replicas[name + "-replica"]
        assert svc["deploy"]["replicas"] == 2 and svc["command"][0] == name + "-service"
        assert svc["environment"]["LEADWIRE_DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in svc["environment"]["LEADWIRE_DATABASE_URL"]
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "keys:/keys" in svc["volumes"]
    # The services call each other through haproxy, which names each replica set and checks /health.
    intake = replicas["intake-replica"]["command"]
    assert intake[intake.index("--routing") + 1] == "haproxy:50052" and intake[intake.index("--report") + 1] == "haproxy:50053"
    mount = replicas["haproxy"]["volumes"][0].split(":")
    cfg = open(os.path.join(ROOT, mount[0])).read()
    for name, port in (("intake", 50051), ("routing", 50052), ("report", 50053)):
        assert "bind :%d proto h2" % port in cfg and "%s-replica:%d" % (name, port) in cfg
    assert cfg.count("option httpchk GET /health") == 3
    import shutil
    import subprocess
    check = subprocess.run([shutil.which("haproxy") or "/usr/sbin/haproxy", "-c", "-f", os.path.join(ROOT, mount[0])],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_dockerfile_builds_products_that_exist():
    with open(os.path.join(ROOT, "Dockerfile")) as fh:
        docker = fh.read()
    with open(os.path.join(ROOT, "Package.swift")) as fh:
        products = set(re.findall(r'\.executable\(name: "([^"]+)"', fh.read()))
    built = set(re.search(r"for p in ([^;]+);", docker).group(1).split())
    assert built == {"intake-service", "routing-service", "report-service", "leadctl"} and built <= products
    # Both stages use the Swift release the code is written for (tools version and Task.immediate).
    images = re.findall(r"^FROM swift:(\d+)\.(\d+)-", docker, re.M)
    assert len(images) == 2 and all((int(a), int(b)) >= (6, 2) for a, b in images), images
