"""Every method of the three services called with a token of every role, against the access table
in docs/rpc-catalogue.md (generated from Auth.AccessPolicy): a ✓ is let through by the access check,
a blank is PERMISSION_DENIED by it. The table and the services therefore cannot disagree."""
import os
import re

import grpc

from test_whole_set import jwt, whole_set  # noqa: F401 (fixture)
from leadwire.intake.v1 import intake_pb2
from leadwire.report.v1 import report_pb2
from leadwire.routing.v1 import routing_pb2

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "rpc-catalogue.md")
SERVICES = {"Intake": ("intake", intake_pb2), "Routing": ("routing", routing_pb2), "Report": ("report", report_pb2)}


def documented_table():
    text = open(DOC, encoding="utf-8").read()
    block = text.split("<!-- access-table: begin (scripts/gen-access-table) -->")[1].split("<!-- access-table: end -->")[0]
    lines = [l for l in block.splitlines() if l.startswith("| method |") or re.match(r"\| (Intake|Routing|Report)\.", l)]
    header = [c.strip().strip("`") for c in lines[0].strip("|").split("|")]
    roles = header[2:]
    table = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        table[cells[0]] = {role: cells[2 + i] == "✓" for i, role in enumerate(roles)}
    return roles, table


def call(channel, path, method, token):
    identity = lambda b: b  # noqa: E731
    md = [("authorization", "Bearer " + token)]
    if method.client_streaming and method.server_streaming:
        list(channel.stream_stream(path, identity, identity)(iter([]), metadata=md, timeout=1))
    elif method.client_streaming:
        channel.stream_unary(path, identity, identity)(iter([]), metadata=md, timeout=1)
    elif method.server_streaming:
        list(channel.unary_stream(path, identity, identity)(b"", metadata=md, timeout=1))
    else:
        channel.unary_unary(path, identity, identity)(b"", metadata=md, timeout=3)


def test_every_method_with_every_role_matches_the_documented_table(whole_set):  # noqa: F811
    roles, table = documented_table()
    assert len(roles) >= 12
    methods = []
    for name, (svc, pb2) in SERVICES.items():
        service = pb2.DESCRIPTOR.services_by_name[name]
        package = pb2.DESCRIPTOR.package
        for m in service.methods:
            methods.append((svc, "%s.%s" % (name, m.name), "/%s.%s/%s" % (package, name, m.name), m))
    # Every RPC of the protos has a row, and no row names a method that does not exist.
    assert sorted(k for _, k, _, _ in methods) == sorted(table), "the table and the protos list different methods"
    channels = {svc: grpc.insecure_channel(whole_set.addr(svc)) for svc in ("intake", "routing", "report")}
    mismatches = []
    for role in roles:
        token = jwt(whole_set.key, "probe-" + role.replace(" ", "-"), [role], ctr="contractor-1" if role == "contractor" else None)
        for svc, key, path, m in methods:
            code, details = grpc.StatusCode.OK, ""
            try:
                call(channels[svc], path, m, token)
            except grpc.RpcError as e:
                code, details = e.code(), e.details() or ""
            refused_by_policy = code == grpc.StatusCode.PERMISSION_DENIED and ("which %s needs" % path) in details
            assert code != grpc.StatusCode.UNAUTHENTICATED, (role, key, details)
            if table[key][role] == refused_by_policy:
                mismatches.append("%s as %s: table says %s, service answered %s %s" % (
                    key, role, "✓" if table[key][role] else "refused", code.name, details[:80]))
    for ch in channels.values():
        ch.close()
    assert not mismatches, "\n".join(mismatches)
