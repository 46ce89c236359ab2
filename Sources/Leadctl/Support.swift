import ArgumentParser
import LeadwireAPI
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Where the services are and who is calling: shared by every subcommand.
struct Connection: ParsableArguments {
    @Option(help: "Intake service host:port (env LEADWIRE_INTAKE_ADDR).")
    var intake: String = ProcessInfoEnv.value("LEADWIRE_INTAKE_ADDR") ?? "127.0.0.1:50051"

    @Option(help: "Routing service host:port (env LEADWIRE_ROUTING_ADDR).")
    var routing: String = ProcessInfoEnv.value("LEADWIRE_ROUTING_ADDR") ?? "127.0.0.1:50052"

    @Option(help: "Report service host:port (env LEADWIRE_REPORT_ADDR).")
    var report: String = ProcessInfoEnv.value("LEADWIRE_REPORT_ADDR") ?? "127.0.0.1:50053"

    // Read from the environment when used, not as the option's default: help output would print it.
    @Option(help: "Bearer token (env LEADWIRE_TOKEN); `leadctl token issue` makes one.")
    var token: String?

    @Option(help: "Seconds to wait for an answer.")
    var timeout: Int64 = 10

    @OptionGroup var tls: TLSOptions

    var options: CallOptions {
        var o = CallOptions(timeout: .seconds(timeout))
        let t = token ?? ProcessInfoEnv.value("LEADWIRE_TOKEN") ?? ""
        if !t.isEmpty { o.metadata.add("authorization", "Bearer " + t) }
        return o
    }

    func intakeClient() throws -> Intake_ServiceClient { Intake_ServiceClient(channel: try WireChannel(address: intake, tls: tls.client)) }
    func routingClient() throws -> Routing_ServiceClient {
        Routing_ServiceClient(channel: try WireChannel(address: routing, tls: tls.client))
    }
    func reportClient() throws -> Report_ServiceClient { Report_ServiceClient(channel: try WireChannel(address: report, tls: tls.client)) }
}

/// How leadctl reaches services that serve TLS.
struct TLSOptions: ParsableArguments {
    @Flag(help: "Call the services over TLS (implied by --cacert; env LEADWIRE_TLS=1).")
    var tls = false

    @Option(help: "PEM file of the CA that signed the services' certificates; default: the system's roots (env LEADWIRE_CACERT).")
    var cacert: String?

    @Option(help: "Client certificate (PEM), for services that require one (env LEADWIRE_CLIENT_CERT).")
    var cert: String?

    @Option(help: "Key of --cert (PEM) (env LEADWIRE_CLIENT_KEY).")
    var key: String?

    @Option(name: .customLong("server-name"), help: "Name to check the services' certificates against, when it is not the host dialled.")
    var serverName: String?

    var client: WireTLS.Client? {
        let ca = cacert ?? ProcessInfoEnv.value("LEADWIRE_CACERT")
        let on = tls || ca != nil || ProcessInfoEnv.value("LEADWIRE_TLS") == "1"
        guard on else { return nil }
        return WireTLS.Client(
            caPath: ca, certificatePath: cert ?? ProcessInfoEnv.value("LEADWIRE_CLIENT_CERT"),
            keyPath: key ?? ProcessInfoEnv.value("LEADWIRE_CLIENT_KEY"), serverName: serverName)
    }

    func validate() throws {
        if (cert == nil) != (key == nil) { throw ValidationError("--cert and --key go together") }
    }
}

/// Runs a call and turns a refusal into plain words: the status, the message, and each field or
/// rule the service named.
func call<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let e as RPCError {
        var lines = ["Error: \(e.code) — \(e.message)"]
        if let d = e.details, let status = try? ProtoCodec.decode(Google_Rpc_Status.self, from: d) {
            for any in status.details {
                if any.typeUrl.hasSuffix("google.rpc.BadRequest"),
                    let br = try? ProtoCodec.decode(Google_Rpc_BadRequest.self, from: any.value)
                {
                    for v in br.fieldViolations { lines.append("  - \(v.field): \(v.description)") }
                } else if any.typeUrl.hasSuffix("google.rpc.PreconditionFailure"),
                    let pf = try? ProtoCodec.decode(Google_Rpc_PreconditionFailure.self, from: any.value)
                {
                    for v in pf.violations { lines.append("  - \(v.type) (\(v.subject)): \(v.description)") }
                }
            }
        }
        switch e.code {
        case .unauthenticated: lines.append("hint: pass --token or set LEADWIRE_TOKEN (leadctl token issue --role admin)")
        case .unavailable: lines.append("hint: is the service running? scripts/up starts the set")
        default: break
        }
        printErr(lines.joined(separator: "\n"))
        throw ExitCode(2)
    }
}

func printErr(_ s: String) {
    fflush(nil)
    let bytes = Array((s + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

/// A plain text table: columns padded to their widest cell; or CSV.
func printTable(_ header: [String], _ rows: [[String]], csv: Bool = false) {
    if csv {
        for r in [header] + rows { print(r.map(CSV.field).joined(separator: ",")) }
        return
    }
    var widths = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    func line(_ r: [String]) -> String {
        r.enumerated().map { i, c in i == r.count - 1 ? c : c + String(repeating: " ", count: widths[i] - c.count) }.joined(separator: "  ")
    }
    print(line(header))
    print(line(widths.map { String(repeating: "-", count: $0) }))
    for r in rows { print(line(r)) }
    if rows.isEmpty { print("(none)") }
}

/// "2026-11-29 10:15" (UTC) for an instant in ms; "" for 0.
func when(_ ms: Int64) -> String {
    guard ms > 0 else { return "" }
    let day = CalendarDate.day(ofMillis: ms)
    let rem = (ms - Int64(day) * 86_400_000) / 60_000
    func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
    return "\(CalendarDate.format(day: day)) \(two(rem / 60)):\(two(rem % 60))"
}

/// Protocol enums as people type and read them: `web_form`, not `CHANNEL_WEB_FORM` or 1.
protocol ProtoEnum: CaseIterable, RawRepresentable<Int32>, CustomStringConvertible {
    var shortName: String? { get }
    init?(protoName: String)
}

extension Intake_Channel: ProtoEnum {}
extension Intake_FieldType: ProtoEnum {}
extension Intake_LeadStatus: ProtoEnum {}
extension Intake_RoutingState: ProtoEnum {}
extension Report_PlanState: ProtoEnum {}

/// "new" for LEAD_STATUS_NEW; a number this build does not know as the number.
func short<E: ProtoEnum>(_ value: E) -> String { value.shortName ?? "\(value.rawValue)" }

/// The value a flag names (short or proto spelling, any case); UNSPECIFIED is not a choice.
func enumValue<E: ProtoEnum>(_ type: E.Type, _ text: String, flag: String) throws -> E {
    if let v = E(protoName: text), v.rawValue != 0 { return v }
    let choices = E.allCases.filter { $0.rawValue != 0 }.compactMap(\.shortName)
    throw ValidationError("\(flag) is one of \(choices.joined(separator: ", ")), not \"\(text)\"")
}

/// "Region=North" -> ("Region", "North").
func keyValue(_ s: String, flag: String) throws -> (String, String) {
    guard let eq = s.firstIndex(of: "=") else { throw ValidationError("\(flag) takes NAME=VALUE, got \"\(s)\"") }
    return (String(s[..<eq]), String(s[s.index(after: eq)...]))
}

/// Person ids as people read them: `Анна Орлова (person-1)`. Routing is asked once per command;
/// where it cannot be asked (down, or the token may not read people) the ids stay bare.
struct PeopleNames {
    private var names: [String: String] = [:]

    static func load(_ connection: Connection) async -> PeopleNames {
        var request = Routing_ListPeopleRequest()
        request.includeInactive = true
        guard let client = try? connection.routingClient(),
            let response = try? await client.listPeople(request, options: connection.options)
        else { return PeopleNames() }
        var known = PeopleNames()
        for person in response.people { known.names[person.id] = person.name }
        return known
    }

    func label(_ id: String) -> String {
        guard !id.isEmpty, let name = names[id], !name.isEmpty else { return id }
        return "\(name) (\(id))"
    }
}
