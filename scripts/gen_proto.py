#!/usr/bin/env python3
"""Generates the code derived from .proto files (run through scripts/gen-proto).

Outputs, all committed:
  Sources/CWireProtos/src/*.pb-c.c, include/**.pb-c.h   protoc-c's encoders/decoders
  Sources/CWireProtos/src/wire_tables.c                   descriptor registry + reflection tables
  <module>/Generated/*.swift                              Swift message structs and service faces

The Swift code never touches C: it reads and writes fields through Wire's ProtoReader/ProtoWriter,
which find offsets in protobuf-c's own field descriptors (table-driven, no per-field C in Swift).
"""
import os
import re
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
GRPC_PROTO = os.environ.get("GRPC_PROTO_DIR", "/usr/share/grpc-proto")
OUR_PROTO = os.path.join(ROOT, "proto")

# Which proto files become Swift, in which module. Standard protos come from Debian's grpc-proto.
SWIFT_TARGETS = [
    ("Sources/Wire/Generated", [
        "grpc/health/v1/health.proto",
        "grpc/reflection/v1/reflection.proto",
        "google/protobuf/any.proto",
    ]),
    ("Sources/WireInterop/Generated", [
        "grpc/testing/empty.proto",
        "grpc/testing/messages.proto",
        "grpc/testing/test.proto",
    ]),
]

# Served by reflection and compiled by protoc-c, but with no Swift of their own: v1alpha reflection
# is byte-identical to v1 on the wire, so Wire serves both with the v1 structs.
C_ONLY = ["grpc/reflection/v1alpha/reflection.proto"]

# Our own protos (proto/leadwire/**) join the C target and reflection tables automatically; the
# Swift module they go to is chosen per package here.
OUR_SWIFT_MODULES = {
    "google.rpc": "Sources/Wire/Generated",
    "leadwire.intake.v1": "Sources/LeadwireAPI/Generated",
    "leadwire.routing.v1": "Sources/LeadwireAPI/Generated",
    "leadwire.report.v1": "Sources/LeadwireAPI/Generated",
    "leadwire.messages.v1": "Sources/LeadwireAPI/Generated",
    "leadwire.catalog.v1": "Sources/LeadwireAPI/Generated",
}

# Unary methods whose server answers with bytes it already holds (the stored record, or a wrapper
# around it): their server requirement returns `EncodedMessage<Response>`, so the answer is not
# decoded and encoded again. Clients see no difference. Full names: package.Service.Method.
ENCODED_RESPONSES = {
    "leadwire.intake.v1.Intake.SubmitLead",
    "leadwire.routing.v1.Routing.RouteLead",
    "leadwire.routing.v1.Routing.GetAssignment",
}

# Short Swift prefixes for our packages (default: every package component capitalised).
SWIFT_PREFIXES = {
    "leadwire.intake.v1": "Intake_",
    "leadwire.routing.v1": "Routing_",
    "leadwire.report.v1": "Report_",
    "leadwire.messages.v1": "Messages_",
    "leadwire.catalog.v1": "Catalog_",
}

SWIFT_KEYWORDS = {
    "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import", "init",
    "inout", "internal", "let", "open", "operator", "private", "protocol", "public", "rethrows",
    "static", "struct", "subscript", "typealias", "var", "break", "case", "continue", "default",
    "defer", "do", "else", "fallthrough", "for", "guard", "if", "in", "repeat", "return", "switch",
    "where", "while", "as", "catch", "false", "is", "nil", "super", "self", "Self", "throw",
    "throws", "true", "try", "Type", "Protocol", "any", "some",
}

FD = descriptor_pb2.FieldDescriptorProto
SCALAR_SWIFT = {
    FD.TYPE_INT32: "Int32", FD.TYPE_SINT32: "Int32", FD.TYPE_SFIXED32: "Int32",
    FD.TYPE_INT64: "Int64", FD.TYPE_SINT64: "Int64", FD.TYPE_SFIXED64: "Int64",
    FD.TYPE_UINT32: "UInt32", FD.TYPE_FIXED32: "UInt32",
    FD.TYPE_UINT64: "UInt64", FD.TYPE_FIXED64: "UInt64",
    FD.TYPE_FLOAT: "Float", FD.TYPE_DOUBLE: "Double", FD.TYPE_BOOL: "Bool",
}
SCALAR_DEFAULT = {"Bool": "false", "Float": "0", "Double": "0"}


def run(cmd):
    subprocess.run(cmd, check=True)


def our_proto_files():
    out = []
    for dirpath, _, files in os.walk(OUR_PROTO):
        for f in files:
            if f.endswith(".proto"):
                out.append(os.path.relpath(os.path.join(dirpath, f), OUR_PROTO))
    return sorted(out)


def camel(s, upper_first):
    parts = [p for p in s.split("_") if p]
    if not parts:
        return s
    out = "".join(p[:1].upper() + p[1:] for p in parts)
    if not upper_first:
        out = parts[0][:1].lower() + parts[0][1:] + out[len(parts[0]):]
    return out


def ident(name):
    return "`%s`" % name if name in SWIFT_KEYWORDS else name


def package_prefix(pkg):
    if pkg in SWIFT_PREFIXES:
        return SWIFT_PREFIXES[pkg]
    return "_".join(camel(p, True) for p in pkg.split(".")) + "_" if pkg else ""


class Types:
    """Maps proto full names (".pkg.Msg.Nested") to Swift names and descriptors."""

    def __init__(self, files):
        self.swift = {}
        self.messages = {}
        self.enums = {}
        for f in files:
            prefix = package_prefix(f.package)
            for m in f.message_type:
                self._add_message(f.package, prefix + m.name, m, "." + f.package + "." + m.name if f.package else "." + m.name)
            for e in f.enum_type:
                full = "." + f.package + "." + e.name
                self.swift[full] = prefix + e.name
                self.enums[full] = e

    def _add_message(self, pkg, swift_name, m, full):
        self.swift[full] = swift_name
        self.messages[full] = m
        for n in m.nested_type:
            self._add_message(pkg, swift_name + "." + n.name, n, full + "." + n.name)
        for e in m.enum_type:
            self.swift[full + "." + e.name] = swift_name + "." + e.name
            self.enums[full + "." + e.name] = e


def enum_case_name(enum_name, value_name):
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum_name).upper() + "_"
    v = value_name
    if v.startswith(prefix) and len(v) > len(prefix) and not v[len(prefix)].isdigit():
        v = v[len(prefix):]
    return ident(camel(v.lower(), False))


def comment_lines(text, indent):
    lines = [l.rstrip() for l in text.strip("\n").split("\n")] if text and text.strip() else []
    return ["%s///%s" % (indent, (" " + l.strip()) if l.strip() else "") for l in lines]


class SwiftFile:
    def __init__(self, fdesc, types):
        self.f = fdesc
        self.t = types
        self.out = []
        self.comments = {}
        for loc in fdesc.source_code_info.location:
            if loc.leading_comments:
                self.comments[tuple(loc.path)] = loc.leading_comments

    def w(self, s=""):
        self.out.append(s)

    def doc(self, path, indent):
        for l in comment_lines(self.comments.get(tuple(path), ""), indent):
            self.w(l)

    def field_info(self, fld):
        """(swift type of the stored property, default expression, kind) for one field."""
        repeated = fld.label == FD.LABEL_REPEATED
        if fld.type in SCALAR_SWIFT:
            base = SCALAR_SWIFT[fld.type]
            kind = "scalar"
            default = SCALAR_DEFAULT.get(base, "0")
        elif fld.type == FD.TYPE_STRING:
            base, kind, default = "String", "string", '""'
        elif fld.type == FD.TYPE_BYTES:
            base, kind, default = "[UInt8]", "bytes", "[]"
        elif fld.type == FD.TYPE_ENUM:
            base, kind = self.t.swift[fld.type_name], "enum"
            default = "%s(rawValue: 0)" % base
        elif fld.type == FD.TYPE_MESSAGE:
            base, kind, default = self.t.swift[fld.type_name], "message", "nil"
        else:
            raise SystemExit("unsupported field type %d in %s" % (fld.type, fld.name))
        if repeated:
            return "[%s]" % base, "[]", kind, base
        if kind == "message":
            return base + "?", "nil", kind, base
        return base, default, kind, base

    def read_expr(self, kind, base, number, repeated):
        if repeated:
            return {
                "scalar": "r.repeatedScalars(%d)" % number,
                "string": "try r.repeatedStrings(%d)" % number,
                "bytes": "r.repeatedBytes(%d)" % number,
                "enum": "try r.repeatedEnums(%d).map { %s(rawValue: $0) }" % (number, base),
                "message": "try r.repeatedMessages(%d, as: %s.self)" % (number, base),
            }[kind]
        return {
            "scalar": "r.scalar(%d)" % number,
            "string": "try r.string(%d)" % number,
            "bytes": "r.bytes(%d)" % number,
            "enum": "%s(rawValue: try r.enumValue(%d))" % (base, number),
            "message": "try r.message(%d, as: %s.self)" % (number, base),
        }[kind]

    def write_stmt(self, kind, number, value, repeated):
        if repeated:
            return {
                "scalar": "w.repeatedScalars(%d, %s)" % (number, value),
                "string": "w.repeatedStrings(%d, %s)" % (number, value),
                "bytes": "w.repeatedBytes(%d, %s)" % (number, value),
                "enum": "w.repeatedEnums(%d, %s.map(\\.rawValue))" % (number, value),
                "message": "w.repeatedMessages(%d, %s)" % (number, value),
            }[kind]
        return {
            "scalar": "w.scalar(%d, %s)" % (number, value),
            "string": "w.string(%d, %s)" % (number, value),
            "bytes": "w.bytes(%d, %s)" % (number, value),
            "enum": "w.enumValue(%d, %s.rawValue)" % (number, value),
            "message": "w.message(%d, %s)" % (number, value),
        }[kind]

    def gen_enum(self, e, swift_name, path, indent):
        short = swift_name.split(".")[-1]
        self.doc(path, indent)
        self.w("%spublic struct %s: RawRepresentable, Hashable, Sendable, CaseIterable, CustomStringConvertible {" % (indent, short))
        self.w("%s    public var rawValue: Int32" % indent)
        self.w("%s    public init(rawValue: Int32) { self.rawValue = rawValue }" % indent)
        for i, v in enumerate(e.value):
            self.doc(path + [2, i], indent + "    ")
            self.w("%s    public static let %s = %s(rawValue: %d)" % (indent, enum_case_name(e.name, v.name), short, v.number))
        # Each number once (aliases share one): what the switches below and allCases list.
        firsts = []
        for v in e.value:
            if all(f.number != v.number for f in firsts):
                firsts.append(v)
        # Names as the proto spells them, and short forms without the enum's prefix: logs, report's
        # dimensions and leadctl write `web_form`, never strip "CHANNEL_" by hand.
        prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", e.name).upper() + "_"

        def short_name(v):
            n = v.name[len(prefix):] if v.name.startswith(prefix) and len(v.name) > len(prefix) else v.name
            return n.lower()

        def by_number(doc, decl, value_of, default):
            if doc:
                self.w("%s    /// %s" % (indent, doc))
            self.w("%s    %s {" % (indent, decl))
            self.w("%s        switch rawValue {" % indent)
            for v in firsts:
                self.w('%s        case %d: "%s"' % (indent, v.number, value_of(v)))
            self.w("%s        default: %s" % (indent, default))
            self.w("%s        }" % indent)
            self.w("%s    }" % indent)

        by_number(None, "public var description: String", lambda v: v.name, '"%s(\\(rawValue))"' % e.name)
        self.w("%s    /// Every value the proto declares (the first name of each number), in proto order." % indent)
        self.w("%s    public static let allCases: [%s] = [%s]" % (
            indent, short, ", ".join("." + enum_case_name(e.name, v.name) for v in firsts)))
        by_number("The value's name in the proto; nil for a number this build does not know.",
                  "public var protoName: String?", lambda v: v.name, "nil")
        by_number("The name without the enum's prefix, in lower case (`%s`); nil for an unknown number." % short_name(e.value[-1]),
                  "public var shortName: String?", short_name, "nil")
        self.w("%s    /// The value named `name`, as the proto spells it or in its short form (any case)." % indent)
        self.w("%s    public init?(protoName name: String) {" % indent)
        self.w("%s        switch name.uppercased() {" % indent)
        for v in e.value:
            alts = ['"%s"' % v.name]
            sn = short_name(v).upper()
            if sn != v.name:
                alts.append('"%s"' % sn)
            self.w("%s        case %s: self.init(rawValue: %d)" % (indent, ", ".join(alts), v.number))
        self.w("%s        default: return nil" % indent)
        self.w("%s        }" % indent)
        self.w("%s    }" % indent)
        self.w("%s}" % indent)

    LIMIT = re.compile(r"[Aa]t most ([\d][\d,]*) (characters|items|elements|lines|fields|rules|conditions|values|events|ids|entries)")

    def field_limits(self, m, path, full_name):
        """FieldLimits for our own messages (package leadwire.*), from "At most N characters." /
        "At most N items." in a field's comment; None for the standard protos."""
        if not full_name.lstrip(".").startswith("leadwire."):
            return None
        chars, items = {}, {}
        for idx, fld in enumerate(m.field):
            text = self.comments.get(tuple(path + [2, idx]), "")
            for number, unit in self.LIMIT.findall(text):
                n = int(number.replace(",", ""))
                if unit == "characters":
                    if fld.type == FD.TYPE_STRING:
                        chars[fld.number] = n
                elif fld.label == FD.LABEL_REPEATED:
                    items[fld.number] = n
        fmt = lambda d: "[%s]" % (", ".join("%d: %d" % kv for kv in sorted(d.items())) or ":")
        return "FieldLimits(maxCharacters: %s, maxItems: %s)" % (fmt(chars), fmt(items))

    def gen_message(self, m, swift_name, full_name, path, indent):
        short = swift_name.split(".")[-1]
        self.doc(path, indent)
        self.w("%spublic struct %s: WireMessage, Hashable {" % (indent, short))
        ind = indent + "    "
        limits = self.field_limits(m, path, full_name)
        if limits is None:
            self.w('%spublic static let wireDescriptor = MessageDescriptor(named: "%s")' % (ind, full_name.lstrip(".")))
        else:
            self.w('%spublic static let wireDescriptor = MessageDescriptor(named: "%s", limits: %s)' % (ind, full_name.lstrip("."), limits))
        # Real oneofs become enums; a oneof named "_x" holding one field is proto3 `optional x`
        # spelled the way protoc-c 1.4.1 accepts, and becomes a Swift Optional.
        oneof_fields = {}
        for idx, fld in enumerate(m.field):
            if fld.HasField("oneof_index"):
                oneof_fields.setdefault(fld.oneof_index, []).append((idx, fld))
        synthetic = {i for i, o in enumerate(m.oneof_decl)
                     if (o.name.startswith("_") and len(oneof_fields.get(i, [])) == 1) or
                     any(f.proto3_optional for _, f in oneof_fields.get(i, []))}
        reads, writes = [], []
        for idx, fld in enumerate(m.field):
            fname = ident(camel(fld.name, False))
            styp, default, kind, base = self.field_info(fld)
            repeated = fld.label == FD.LABEL_REPEATED
            if fld.HasField("oneof_index") and fld.oneof_index not in synthetic:
                continue
            self.doc(path + [2, idx], ind)
            if fld.HasField("oneof_index"):
                typ = base + "?"
                self.w("%spublic var %s: %s = nil" % (ind, fname, typ))
                reads.append("if r.has(%d) { self.%s = %s }" % (fld.number, fname, self.read_expr(kind, base, fld.number, False)))
                writes.append("if let v = self.%s { %s }" % (fname, self.write_stmt(kind, fld.number, "v", False)))
            else:
                self.w("%spublic var %s: %s = %s" % (ind, fname, styp, default))
                reads.append("self.%s = %s" % (fname, self.read_expr(kind, base, fld.number, repeated)))
                writes.append(self.write_stmt(kind, fld.number, "self." + fname, repeated))
        for oi, o in enumerate(m.oneof_decl):
            if oi in synthetic:
                continue
            ename = "OneOf_" + camel(o.name, True)
            pname = ident(camel(o.name, False))
            self.doc(path + [8, oi], ind)
            self.w("%spublic var %s: %s? = nil" % (ind, pname, ename))
            self.w("%spublic enum %s: Sendable, Hashable {" % (ind, ename))
            for idx, fld in oneof_fields.get(oi, []):
                _, _, kind, base = self.field_info(fld)
                self.doc(path + [2, idx], ind + "    ")
                self.w("%s    case %s(%s)" % (ind, ident(camel(fld.name, False)), base))
            self.w("%s}" % ind)
            first = True
            for idx, fld in oneof_fields.get(oi, []):
                _, _, kind, base = self.field_info(fld)
                cname = camel(fld.name, False)
                expr = self.read_expr(kind, base, fld.number, False)
                if kind == "message":
                    expr = "(%s ?? %s())" % (expr, base)
                reads.append("%sif r.has(%d) { self.%s = .%s(%s) }" % ("" if first else "else ", fld.number, pname, ident(cname), expr))
                first = False
            cases = []
            for idx, fld in oneof_fields.get(oi, []):
                _, _, kind, base = self.field_info(fld)
                cases.append("case .%s(let v): %s" % (ident(camel(fld.name, False)), self.write_stmt(kind, fld.number, "v", False)))
            writes.append(("switch self.%s {\n" % pname) + "\n".join(cases) + "\ncase nil: break\n}")
        self.w("%spublic init() {}" % ind)
        self.w("%spublic init(reading r: ProtoReader) throws {" % ind)
        for line in reads:
            self.w("%s    %s" % (ind, line))
        self.w("%s}" % ind)
        self.w("%spublic func write(to w: inout ProtoWriter) {" % ind)
        for stmt in writes:
            for line in stmt.split("\n"):
                self.w("%s    %s" % (ind, line))
        self.w("%s}" % ind)
        for ni, n in enumerate(m.nested_type):
            self.gen_message(n, swift_name + "." + n.name, full_name + "." + n.name, path + [3, ni], ind)
        for ei, e in enumerate(m.enum_type):
            self.gen_enum(e, swift_name + "." + e.name, path + [4, ei], ind)
        self.w("%s}" % indent)

    def gen_service(self, s, si):
        pkg = self.f.package
        full = (pkg + "." if pkg else "") + s.name
        prefix = package_prefix(pkg)
        # "Intake_" + "Intake" would read twice: a service named like its prefix is just "Intake".
        short = prefix.rstrip("_") == s.name
        base = s.name if short else prefix + s.name
        # Intake_Client is the domain's Client message; the stub for such a service is *_ServiceClient.
        client_name = base + ("_ServiceClient" if short else "_Client")
        path = [6, si]
        self.doc(path, "")
        self.w("public protocol %s_Service: WireService {" % base)
        for mi, meth in enumerate(s.method):
            req = self.t.swift[meth.input_type]
            resp = self.t.swift[meth.output_type]
            fn = ident(camel(meth.name, False))
            self.doc(path + [2, mi], "    ")
            if not meth.client_streaming and not meth.server_streaming:
                if full + "." + meth.name in ENCODED_RESPONSES:
                    resp = "EncodedMessage<%s>" % resp
                self.w("    func %s(_ request: %s, context: ServerContext) async throws -> %s" % (fn, req, resp))
            elif not meth.client_streaming:
                self.w("    func %s(_ request: %s, responses: ResponseWriter<%s>, context: ServerContext) async throws" % (fn, req, resp))
            elif not meth.server_streaming:
                self.w("    func %s(requests: RequestStream<%s>, context: ServerContext) async throws -> %s" % (fn, req, resp))
            else:
                self.w("    func %s(requests: RequestStream<%s>, responses: ResponseWriter<%s>, context: ServerContext) async throws" % (fn, req, resp))
        self.w("}")
        self.w("")
        # One descriptor per method: code names an RPC by a case, so renaming one in the proto
        # fails to compile wherever it is used (the access policy included), not at run time.
        self.w("/// The methods of %s, in proto order." % full)
        self.w("public enum %s_Method: String, WireMethod {" % base)
        for meth in s.method:
            self.w('    case %s = "%s"' % (ident(camel(meth.name, False)), meth.name))
        self.w("")
        self.w('    public static var serviceName: String { "%s" }' % full)
        self.w("    /// `/package.Service/Method`, as the `:path` header carries it.")
        self.w("    public var path: String {")
        self.w("        switch self {")
        for meth in s.method:
            self.w('        case .%s: "/%s/%s"' % (ident(camel(meth.name, False)), full, meth.name))
        self.w("        }")
        self.w("    }")
        self.w("}")
        self.w("")
        self.w("extension %s_Service {" % base)
        self.w('    public static var serviceName: String { %s_Method.serviceName }' % base)
        self.w("    public var methods: [ServerMethod] {")
        self.w("        [")
        for meth in s.method:
            fn = ident(camel(meth.name, False))
            p = "%s_Method.%s.path" % (base, fn)
            if not meth.client_streaming and not meth.server_streaming:
                self.w("            .unary(%s) { try await self.%s($0, context: $1) }," % (p, fn))
            elif not meth.client_streaming:
                self.w("            .serverStreaming(%s) { try await self.%s($0, responses: $1, context: $2) }," % (p, fn))
            elif not meth.server_streaming:
                self.w("            .clientStreaming(%s) { try await self.%s(requests: $0, context: $1) }," % (p, fn))
            else:
                self.w("            .bidirectionalStreaming(%s) { try await self.%s(requests: $0, responses: $1, context: $2) }," % (p, fn))
        self.w("        ]")
        self.w("    }")
        self.w("}")
        self.w("")
        self.doc(path, "")
        self.w("public struct %s: Sendable {" % client_name)
        self.w("    public let channel: WireChannel")
        self.w("    public init(channel: WireChannel) { self.channel = channel }")
        for mi, meth in enumerate(s.method):
            req = self.t.swift[meth.input_type]
            resp = self.t.swift[meth.output_type]
            fn = ident(camel(meth.name, False))
            p = "%s_Method.%s.path" % (base, fn)
            self.doc(path + [2, mi], "    ")
            if not meth.client_streaming and not meth.server_streaming:
                self.w("    public func %s(_ request: %s, options: CallOptions = CallOptions()) async throws -> %s {" % (fn, req, resp))
                self.w("        try await channel.unary(%s, request: request, options: options)" % p)
            elif not meth.client_streaming:
                self.w("    public func %s<R: Sendable>(_ request: %s, options: CallOptions = CallOptions(), _ body: (StreamingCall<%s, %s>) async throws -> R) async throws -> R {" % (fn, req, req, resp))
                self.w("        try await channel.serverStreaming(%s, request: request, options: options, body)" % p)
            else:
                self.w("    public func %s<R: Sendable>(options: CallOptions = CallOptions(), _ body: (StreamingCall<%s, %s>) async throws -> R) async throws -> R {" % (fn, req, resp))
                self.w("        try await channel.streaming(%s, options: options, body)" % p)
            self.w("    }")
        self.w("}")

    def generate(self, wire_import):
        self.w("// Generated by scripts/gen-proto from %s. Do not edit." % self.f.name)
        if wire_import:
            self.w("import Wire")
        self.w("")
        prefix = package_prefix(self.f.package)
        for ei, e in enumerate(self.f.enum_type):
            self.gen_enum(e, prefix + e.name, [5, ei], "")
            self.w("")
        for mi, m in enumerate(self.f.message_type):
            full = "." + self.f.package + "." + m.name if self.f.package else "." + m.name
            self.gen_message(m, prefix + m.name, full, [4, mi], "")
            self.w("")
        for si, s in enumerate(self.f.service):
            self.gen_service(s, si)
            self.w("")
        while self.out and self.out[-1] == "":
            self.out.pop()
        return "\n".join(self.out) + "\n"


def c_bytes(data):
    lines = []
    for i in range(0, len(data), 20):
        lines.append("    " + ",".join("0x%02x" % b for b in data[i:i + 20]) + ",")
    return "\n".join(lines)


def symbols_of(f):
    pkg = f.package + "." if f.package else ""
    out = []

    def msg(m, prefix):
        name = prefix + m.name
        out.append(name)
        for fld in m.field:
            out.append(name + "." + fld.name)
        for n in m.nested_type:
            msg(n, name + ".")
        for e in m.enum_type:
            out.append(name + "." + e.name)

    for m in f.message_type:
        msg(m, pkg)
    for e in f.enum_type:
        out.append(pkg + e.name)
    for s in f.service:
        out.append(pkg + s.name)
        for meth in s.method:
            out.append(pkg + s.name + "." + meth.name)
    return out


def main():
    ours = our_proto_files()
    methods = set()
    standard = [p for _, files in SWIFT_TARGETS for p in files] + C_ONLY
    all_inputs = standard + ours
    includes = ["-I" + OUR_PROTO, "-I" + GRPC_PROTO]

    cdir = os.path.join(ROOT, "Sources/CWireProtos")
    with tempfile.TemporaryDirectory() as tmp:
        desc_path = os.path.join(tmp, "set.binpb")
        run(["protoc", *includes, "--include_imports", "--include_source_info",
             "--descriptor_set_out=" + desc_path, *all_inputs])
        cout = os.path.join(tmp, "c")
        os.makedirs(cout)
        fds = descriptor_pb2.FileDescriptorSet()
        with open(desc_path, "rb") as fh:
            fds.ParseFromString(fh.read())
        for f in fds.file:
            for svc in f.service:
                methods |= {"%s.%s.%s" % (f.package, svc.name, m.name) for m in svc.method
                            if not m.client_streaming and not m.server_streaming}
        unknown = sorted(ENCODED_RESPONSES - methods)
        if unknown:
            sys.exit("scripts/gen-proto: ENCODED_RESPONSES names no unary method: " + ", ".join(unknown))
        # protoc-c must see every file in the closure, imports included.
        run(["protoc-c", *includes, "--c_out=" + cout, *[f.name for f in fds.file]])
        for sub in ("src", "include"):
            d = os.path.join(cdir, sub)
            for dirpath, _, files in os.walk(d, topdown=False):
                for fn in files:
                    if fn.endswith((".pb-c.c", ".pb-c.h")) or fn == "wire_tables.c":
                        os.remove(os.path.join(dirpath, fn))
                if dirpath != d and not os.listdir(dirpath):
                    os.rmdir(dirpath)
        externs = []
        headers = []
        for dirpath, _, files in os.walk(cout):
            for fn in sorted(files):
                src = os.path.join(dirpath, fn)
                rel = os.path.relpath(src, cout)
                if fn.endswith(".pb-c.h"):
                    dst = os.path.join(cdir, "include", rel)
                    headers.append(rel)
                    with open(src) as fh:
                        externs += re.findall(r"extern const ProtobufCMessageDescriptor (\w+);", fh.read())
                else:
                    dst = os.path.join(cdir, "src", rel.replace("/", "_"))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                with open(src) as fh, open(dst, "w") as out:
                    out.write(fh.read())

    headers.sort()
    externs.sort()
    umbrella = ["// Generated by scripts/gen-proto. Do not edit.", "#pragma once", "#include <stddef.h>",
                "#include <protobuf-c/protobuf-c.h>"]
    umbrella += ['#include "%s"' % h for h in headers]
    umbrella += [
        "",
        "/// Every message descriptor protoc-c generated; Wire indexes them by full name at start-up.",
        "const ProtobufCMessageDescriptor *wire_message_descriptor_at(size_t index);",
        "extern const size_t wire_message_descriptor_count;",
        "",
        "/// One serialized FileDescriptorProto (with source comments) per .proto file, for reflection.",
        "typedef struct { const char *name; const unsigned char *bytes; size_t length;",
        "                 const char *const *dependencies; size_t dependency_count;",
        "                 const char *const *symbols; size_t symbol_count; } WireProtoFile;",
        "const WireProtoFile *wire_proto_file_at(size_t index);",
        "extern const size_t wire_proto_file_count;",
    ]
    with open(os.path.join(cdir, "include/CWireProtos.h"), "w") as fh:
        fh.write("\n".join(umbrella) + "\n")
    # An explicit module map: SwiftPM refuses an umbrella header with directories beside it.
    with open(os.path.join(cdir, "include/module.modulemap"), "w") as fh:
        fh.write('module CWireProtos {\n    header "CWireProtos.h"\n    export *\n}\n')

    tables = ["// Generated by scripts/gen-proto. Do not edit.", '#include "CWireProtos.h"', ""]
    tables.append("static const ProtobufCMessageDescriptor *const wire_message_descriptors[] = {")
    tables += ["    &%s," % e for e in externs]
    tables.append("};")
    tables.append("const size_t wire_message_descriptor_count = %d;" % len(externs))
    tables.append("const ProtobufCMessageDescriptor *wire_message_descriptor_at(size_t i) { return wire_message_descriptors[i]; }")
    tables.append("")
    entries = []
    for i, f in enumerate(fds.file):
        data = f.SerializeToString(deterministic=True)
        tables.append("static const unsigned char file_%d_bytes[] = {\n%s\n};" % (i, c_bytes(data)))
        deps = list(f.dependency)
        tables.append("static const char *const file_%d_deps[] = {%s};" % (i, ", ".join('"%s"' % d for d in deps) or "0"))
        syms = symbols_of(f)
        tables.append("static const char *const file_%d_symbols[] = {%s};" % (i, ", ".join('"%s"' % s for s in syms) or "0"))
        entries.append('    {"%s", file_%d_bytes, %d, file_%d_deps, %d, file_%d_symbols, %d},' % (f.name, i, len(data), i, len(deps), i, len(syms)))
    tables.append("static const WireProtoFile wire_proto_files[] = {")
    tables += entries
    tables.append("};")
    tables.append("const size_t wire_proto_file_count = %d;" % len(entries))
    tables.append("const WireProtoFile *wire_proto_file_at(size_t i) { return &wire_proto_files[i]; }")
    with open(os.path.join(cdir, "src/wire_tables.c"), "w") as fh:
        fh.write("\n".join(tables) + "\n")

    types = Types(fds.file)
    by_name = {f.name: f for f in fds.file}
    targets = [(d, files) for d, files in SWIFT_TARGETS]
    for p in ours:
        mod = OUR_SWIFT_MODULES.get(by_name[p].package)
        if mod:
            targets.append((mod, [p]))
    for outdir, files in targets:
        d = os.path.join(ROOT, outdir)
        os.makedirs(d, exist_ok=True)
        wanted = set()
        for p in files:
            f = by_name[p]
            if f.syntax != "proto3":
                raise SystemExit("%s: only proto3 is supported" % p)
            name = p.replace("/", "_").replace(".proto", ".pb.swift")
            wanted.add(name)
            text = SwiftFile(f, types).generate(wire_import=not outdir.startswith("Sources/Wire/"))
            with open(os.path.join(d, name), "w") as fh:
                fh.write(text)
        for old in os.listdir(d):
            if old.endswith(".pb.swift") and old not in wanted and not any(
                    t[0] == outdir and old in {q.replace("/", "_").replace(".proto", ".pb.swift") for q in t[1]} for t in targets):
                os.remove(os.path.join(d, old))


if __name__ == "__main__":
    main()
