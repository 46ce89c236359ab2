import NIOConcurrencyHelpers
import Wire

/// Permissions name what an RPC needs; roles (carried in tokens) grant sets of them.
public enum Permission {
    public static let all = "*"
    public static let leadsRead = "leads.read"
    /// "Add and change leads": manual entry and processing.
    public static let leadsWrite = "leads.write"
    public static let sourcesWrite = "sources.write"
    public static let clientsWrite = "clients.write"
    /// Take and confirm the replies owed to applicants (a mail/SMS gateway).
    public static let repliesSend = "replies.send"
    public static let directoryWrite = "directory.write"
    public static let routingRead = "routing.read"
    public static let routingWrite = "routing.write"
    public static let eventsWrite = "events.write"
    public static let plansRead = "plans.read"
    public static let plansWrite = "plans.write"
    public static let plansApproveHead = "plans.approve.head"
    public static let plansApproveManagement = "plans.approve.management"
    public static let reportsRead = "reports.read"
    /// The intake-wide switch that opens and closes intake to new leads.
    public static let intakeAdmin = "intake.admin"
    /// Read message templates and the message queue.
    public static let messagesRead = "messages.read"
    /// Change message templates; queue a set-aside message again.
    public static let messagesAdmin = "messages.admin"
    /// Search the catalogue and read items, mappings and proposals.
    public static let catalogRead = "catalog.read"
    /// Import supplier price lists and change their column mappings.
    public static let catalogWrite = "catalog.write"
    /// Create, revise and send commercial proposals.
    public static let proposalsWrite = "proposals.write"
    /// Approve a draft proposal (or return it for correction).
    public static let proposalsApprove = "proposals.approve"
    /// A contractor's own plans (the token's contractor id).
    public static let contractorSelf = "contractor.self"
}

public enum Roles {
    /// Role name -> permissions. Names are case-sensitive; the first three are routing's stock roles.
    public static let grants: [String: Set<String>] = [
        "admin": [Permission.all],
        // What the services need of each other: Intake routes and reports, Report checks numbers.
        "service": [Permission.leadsRead, Permission.routingRead, Permission.routingWrite, Permission.eventsWrite],
        "Sales manager": [
            Permission.leadsRead, Permission.leadsWrite, Permission.routingRead, Permission.plansRead, Permission.catalogRead,
            Permission.proposalsWrite,
        ],
        "Marketer": [Permission.leadsRead, Permission.leadsWrite, Permission.routingRead],
        "Head of sales": [
            Permission.leadsRead, Permission.leadsWrite, Permission.routingRead, Permission.routingWrite,
            Permission.directoryWrite, Permission.sourcesWrite, Permission.clientsWrite, Permission.reportsRead, Permission.plansRead,
            Permission.intakeAdmin, Permission.messagesRead, Permission.messagesAdmin, Permission.catalogRead, Permission.catalogWrite,
            Permission.proposalsWrite, Permission.proposalsApprove,
        ],
        "intake-gateway": [Permission.leadsWrite, Permission.leadsRead, Permission.repliesSend, Permission.messagesRead],
        "planner": [Permission.plansRead, Permission.plansWrite, Permission.reportsRead, Permission.leadsRead, Permission.messagesRead],
        "department-head": [
            Permission.plansRead, Permission.plansWrite, Permission.plansApproveHead, Permission.reportsRead, Permission.leadsRead,
            Permission.messagesRead, Permission.messagesAdmin,
        ],
        "management": [Permission.plansRead, Permission.plansApproveManagement, Permission.reportsRead, Permission.leadsRead],
        "accounting": [Permission.clientsWrite, Permission.leadsRead],
        "dashboard": [Permission.reportsRead, Permission.leadsRead, Permission.routingRead, Permission.plansRead, Permission.catalogRead],
        "contractor": [Permission.contractorSelf],
    ]

    public static func permissions(_ roles: [String]) -> Set<String> {
        roles.reduce(into: Set<String>()) { $0.formUnion(grants[$1] ?? []) }
    }
}

/// The verified caller of the current call (nil when authentication is off).
public enum Caller {
    @TaskLocal public static var current: Claims?

    public static func has(_ permission: String) -> Bool {
        guard let c = current else { return true }
        let p = Roles.permissions(c.roles)
        return p.contains(Permission.all) || p.contains(permission)
    }

    /// Whether the caller acts as a contractor (and is not staff who may read every plan): their
    /// calls are confined to `current.ctr`.
    public static var isContractor: Bool {
        guard let c = current else { return false }
        let p = Roles.permissions(c.roles)
        return p.contains(Permission.contractorSelf) && !p.contains(Permission.all) && !p.contains(Permission.plansRead)
    }

    /// Throws PERMISSION_DENIED unless the caller has `permission` (always passes with auth off).
    public static func require(_ permission: String, for what: String) throws {
        guard !has(permission), let c = current else { return }
        throw RPCError(
            .permissionDenied, "\(c.sub) (roles: \(c.roles.joined(separator: ", "))) lacks \"\(permission)\", which \(what) needs")
    }

    /// The principal's name for records ("actor"), or `fallback` with auth off.
    public static func name(or fallback: String) -> String {
        current?.sub ?? fallback
    }
}

/// Checks `authorization: Bearer <token>` on every call except health and reflection, and the
/// permission each method needs (a method without an entry is refused: deny by default).
public struct AuthInterceptor: ServerInterceptor {
    let key: SigningKey
    let policy: [String: AccessPolicy.Rule]
    /// A verified token's claims and what its roles grant: a busy caller costs one HMAC and one
    /// permission lookup per distinct token, not per call.
    struct Verified {
        var claims: Claims
        var granted: Set<String>
    }
    private let cache = NIOLockedValueBox<[String: Verified]>([:])

    public init(key: SigningKey, policy: [String: AccessPolicy.Rule]) {
        self.key = key
        self.policy = policy
    }

    static func isOpen(_ method: String) -> Bool {
        method.hasPrefix("/grpc.health.v1.Health/") || method.hasPrefix("/grpc.reflection.")
    }

    public func intercept(_ context: ServerContext, next: () async throws -> Void) async throws {
        let method = context.method
        if Self.isOpen(method) { return try await next() }
        let verified = try authenticate(context.requestMetadata.values("authorization"))
        let claims = verified.claims
        context.principal = claims.sub
        guard let needed = policy[method] else {
            throw RPCError(.permissionDenied, "\(method) has no access rule; refused by default")
        }
        guard AccessPolicy.allows(granted: verified.granted, needed) else {
            let needs = needed.permissions.map { "\"\($0)\"" }.joined(separator: " or ")
            throw RPCError(
                .permissionDenied, "\(claims.sub) (roles: \(claims.roles.joined(separator: ", "))) lacks \(needs), which \(method) needs")
        }
        try await Caller.$current.withValue(claims) { try await next() }
    }

    /// The scheme is matched without regard to case (RFC 7235: `Bearer`, `bearer`, `BEARER`), then
    /// exactly one space and the token, nothing after it.
    func authenticate(_ values: [Metadata.Value]) throws -> Verified {
        guard let value = values.first else {
            throw RPCError(
                .unauthenticated, "missing authorization metadata: send \"authorization: Bearer <token>\" (leadctl token issue makes one)")
        }
        guard values.count == 1 else {
            throw RPCError(.unauthenticated, "the call carries \(values.count) authorization headers; send exactly one")
        }
        guard case .string(let header) = value else {
            throw RPCError(.unauthenticated, "authorization must be text: \"Bearer <token>\"")
        }
        let scheme = header.prefix(7)
        guard scheme.count == 7, scheme.lowercased() == "bearer " else {
            throw RPCError(.unauthenticated, "authorization must be \"Bearer <token>\"")
        }
        let token = String(header.dropFirst(7))
        guard !token.isEmpty, !token.contains(where: { $0 == " " || $0 == "\t" }) else {
            throw RPCError(.unauthenticated, "authorization must be \"Bearer <token>\": one space, then the token, nothing after it")
        }
        let now = epochSeconds()
        if let v = cache.withLockedValue({ $0[token] }), v.claims.exp > now, (v.claims.nbf ?? 0) <= now + SigningKey.clockSkew { return v }
        do {
            let c = try key.verify(token, now: now)
            let v = Verified(claims: c, granted: Roles.permissions(c.roles))
            cache.withLockedValue { cache in
                if cache.count >= 4096 { cache.removeAll(keepingCapacity: true) }
                cache[token] = v
            }
            return v
        } catch {
            throw RPCError(.unauthenticated, error.description)
        }
    }
}
