import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import Wire

/// Where and how the services hand e-mail over: an SMTP relay (RFC 5321), with STARTTLS
/// (RFC 3207) or TLS from the first byte, and AUTH PLAIN or LOGIN (RFC 4954).
public struct SMTPConfiguration: Sendable {
    public enum Security: String, Sendable, CaseIterable {
        /// Plain SMTP; STARTTLS is not attempted.
        case none
        /// STARTTLS when the server offers it, plain otherwise.
        case starttls
        /// STARTTLS or nothing: a server that does not offer it is a failure (retried).
        case requireStarttls = "require-starttls"
        /// TLS from the first byte (port 465, "SMTPS").
        case tls
    }

    public var host: String
    public var port: Int
    public var security: Security
    /// AUTH when both are set.
    public var username: String?
    public var password: String?
    /// PEM file of the CA the server's certificate must chain to; nil = the system's roots.
    public var caPath: String?
    /// Off only for a relay with a certificate nobody can check (logged as a warning).
    public var verifyCertificate: Bool
    /// The envelope sender and the From header.
    public var fromAddress: String
    public var fromName: String
    /// The name we give in EHLO.
    public var heloName: String
    /// Each command's answer must come within this.
    public var commandTimeout: TimeAmount

    public init(
        host: String, port: Int, security: Security = .starttls, username: String? = nil, password: String? = nil,
        caPath: String? = nil, verifyCertificate: Bool = true, fromAddress: String, fromName: String = "",
        heloName: String = "leadwire.localhost", commandTimeout: TimeAmount = .seconds(30)
    ) {
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.caPath = caPath
        self.verifyCertificate = verifyCertificate
        self.fromAddress = fromAddress
        self.fromName = fromName
        self.heloName = heloName
        self.commandTimeout = commandTimeout
    }
}

/// One reply: its code and text lines ("250-a", "250 b" -> 250, ["a", "b"]).
public struct SMTPReply: Sendable, Equatable {
    public var code: Int
    public var lines: [String]

    public var text: String { lines.joined(separator: " ") }
    var isPositive: Bool { code >= 200 && code < 400 }
    var isPermanent: Bool { code >= 500 }
}

/// What became of one message.
public enum SMTPOutcome: Sendable, Equatable {
    case sent(SMTPReply)
    /// The relay refused it for good (5xx): set aside, not retried.
    case permanent(String)
    /// Try again later: a 4xx, or the connection failed.
    case transient(String)
}

/// Splits the byte stream into replies; a reply's lines end at the one with a space (or nothing)
/// after its code.
struct SMTPReplyDecoder: ByteToMessageDecoder {
    typealias InboundOut = SMTPReply
    private var lines = [String]()

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > 8192 { throw SMTPError.protocolViolation("a reply line longer than 8 KiB") }
            return .needMoreData
        }
        let length = newline - buffer.readerIndex
        var line = buffer.readString(length: length) ?? ""
        buffer.moveReaderIndex(forwardBy: 1)
        if line.hasSuffix("\r") { line.removeLast() }
        let bytes = Array(line.utf8)
        guard bytes.count >= 3, bytes[0..<3].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let code = Int(String(line.prefix(3))) else {
            throw SMTPError.protocolViolation("not an SMTP reply: \"\(line.prefix(80))\"")
        }
        let more = bytes.count > 3 && bytes[3] == UInt8(ascii: "-")
        lines.append(bytes.count > 4 ? String(line.dropFirst(4)) : "")
        if lines.count > 200 { throw SMTPError.protocolViolation("a reply of more than 200 lines") }
        if more { return .continue }
        context.fireChannelRead(wrapInboundOut(SMTPReply(code: code, lines: lines)))
        lines = []
        return .continue
    }
}

enum SMTPError: Error, CustomStringConvertible {
    case protocolViolation(String)
    case closed
    case timeout(String)
    case refused(SMTPReply, String)
    case insecure(String)
    case transport(String)

    var description: String {
        switch self {
        case .protocolViolation(let s): "the relay broke the protocol: \(s)"
        case .closed: "the relay closed the connection"
        case .timeout(let what): "no answer from the relay to \(what) in time"
        case .refused(let r, let what): "the relay answered \(what) with \(r.code) \(r.text)"
        case .insecure(let s): s
        case .transport(let s): "the connection to the relay failed: \(s)"
        }
    }
}

/// One SMTP session: greeting, EHLO, STARTTLS and AUTH as configured, then any number of
/// messages (RSET after a refused one), then QUIT. Used by one task at a time (the mailer's).
public final class SMTPConnection: @unchecked Sendable {
    private let config: SMTPConfiguration
    private let channel: any Channel
    private var replies: NIOAsyncChannelInboundStream<SMTPReply>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var extensions = [String]()
    public private(set) var encrypted = false

    private init(
        config: SMTPConfiguration, channel: any Channel, inbound: NIOAsyncChannelInboundStream<SMTPReply>,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) {
        self.config = config
        self.channel = channel
        self.replies = inbound.makeAsyncIterator()
        self.outbound = outbound
    }

    /// Connects, gets the session ready for MAIL (greeting, EHLO, STARTTLS, AUTH), runs `body`,
    /// says QUIT and closes. Failures before `body` runs are thrown as they are.
    public static func withSession<T: Sendable>(
        _ config: SMTPConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        _ body: (SMTPConnection) async throws -> T
    ) async throws -> T {
        let context = try makeTLSContext(config)
        let implicitTLS = config.security == .tls
        let serverName = serverHostname(config)
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(.seconds(10))
            .connect(host: config.host, port: config.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if implicitTLS {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
                    }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(SMTPReplyDecoder()))
                    return try NIOAsyncChannel<SMTPReply, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        try await SelfConnection.refuse(channel.channel).get()
        return try await channel.executeThenClose { inbound, outbound in
            let c = SMTPConnection(config: config, channel: channel.channel, inbound: inbound, outbound: outbound)
            c.encrypted = implicitTLS
            try await c.handshake(context)
            let result = try await body(c)
            _ = try? await c.command("QUIT")
            return result
        }
    }

    private static func makeTLSContext(_ config: SMTPConfiguration) throws -> NIOSSLContext {
        var t = TLSConfiguration.makeClientConfiguration()
        t.minimumTLSVersion = .tlsv12
        if let ca = config.caPath { t.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca)) }
        if !config.verifyCertificate { t.certificateVerification = .none }
        return try NIOSSLContext(configuration: t)
    }

    /// SNI and the name checked: the host, unless it is an IP address.
    private static func serverHostname(_ config: SMTPConfiguration) -> String? {
        (try? SocketAddress(ipAddress: config.host, port: 0)) != nil ? nil : config.host
    }

    private func handshake(_ tls: NIOSSLContext) async throws {
        try expect(try await reply(to: "the greeting"), "the greeting")
        try await ehlo()
        if !encrypted, config.security != .none {
            if extensions.contains(where: { $0.uppercased() == "STARTTLS" }) {
                try expect(try await command("STARTTLS"), "STARTTLS")
                let name = Self.serverHostname(config)
                let channel = self.channel
                // The handler is made on the channel's loop: it is not Sendable.
                try await channel.eventLoop.submit {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: tls, serverHostname: name), position: .first)
                }.get()
                encrypted = true
                // RFC 3207: everything learned before TLS is forgotten.
                try await ehlo()
            } else if config.security == .requireStarttls {
                throw SMTPError.insecure("the relay does not offer STARTTLS, and --smtp-security require-starttls asks for it")
            }
        }
        if let user = config.username, let password = config.password, !user.isEmpty {
            try await authenticate(user: user, password: password)
        }
    }

    private func ehlo() async throws {
        let r = try await command("EHLO \(config.heloName)")
        if r.isPositive {
            extensions = Array(r.lines.dropFirst())
        } else {
            try expect(try await command("HELO \(config.heloName)"), "HELO")
            extensions = []
        }
    }

    private func authenticate(user: String, password: String) async throws {
        guard encrypted || Self.isLoopback(config.host) else {
            throw SMTPError.insecure(
                "refusing to send the SMTP password over an unencrypted connection to \(config.host); use --smtp-security starttls or tls")
        }
        let auth = extensions.first { $0.uppercased().hasPrefix("AUTH") }?.uppercased().split(separator: " ").map(String.init) ?? []
        if auth.contains("PLAIN") || auth.isEmpty {
            let token = MIME.base64([0] + Array(user.utf8) + [0] + Array(password.utf8))
            try expect(try await command("AUTH PLAIN \(token)", redacted: "AUTH PLAIN ***"), "AUTH PLAIN")
        } else if auth.contains("LOGIN") {
            let r = try await command("AUTH LOGIN")
            guard r.code == 334 else { throw SMTPError.refused(r, "AUTH LOGIN") }
            let r2 = try await command(MIME.base64(Array(user.utf8)), redacted: "(user name)")
            guard r2.code == 334 else { throw SMTPError.refused(r2, "AUTH LOGIN's user name") }
            try expect(try await command(MIME.base64(Array(password.utf8)), redacted: "(password)"), "AUTH LOGIN")
        } else {
            throw SMTPError.insecure(
                "the relay offers none of the AUTH mechanisms we speak (PLAIN, LOGIN): \(auth.dropFirst().joined(separator: " "))")
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host.hasPrefix("127.") || host == "::1"
    }

    /// Sends one message; the connection stays usable after a refusal (RSET).
    public func send(_ message: MailMessage) async throws -> SMTPOutcome {
        let steps: [(String, String)] = [
            ("MAIL FROM:<\(config.fromAddress)>", "MAIL FROM"), ("RCPT TO:<\(message.toAddress)>", "RCPT TO"), ("DATA", "DATA"),
        ]
        for (line, what) in steps {
            let r = try await command(line)
            let wanted = what == "DATA" ? r.code == 354 : r.isPositive
            if !wanted {
                _ = try? await command("RSET")
                return r.isPermanent ? .permanent("\(what): \(r.code) \(r.text)") : .transient("\(what): \(r.code) \(r.text)")
            }
        }
        var buffer = channel.allocator.buffer(capacity: 4096)
        buffer.writeBytes(Self.dotStuffed(message.rendered()))
        buffer.writeString(".\r\n")
        try await outbound.write(buffer)
        let r = try await reply(to: "the message's end")
        if r.isPositive { return .sent(r) }
        return r.isPermanent ? .permanent("DATA: \(r.code) \(r.text)") : .transient("DATA: \(r.code) \(r.text)")
    }

    /// RFC 5321 §4.5.2: a line that starts with "." gets another in front.
    static func dotStuffed(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count + 16)
        var atLineStart = true
        for b in bytes {
            if atLineStart && b == UInt8(ascii: ".") { out.append(b) }
            out.append(b)
            atLineStart = b == UInt8(ascii: "\n")
        }
        if !atLineStart { out += [13, 10] }
        return out
    }

    private func command(_ line: String, redacted: String? = nil) async throws -> SMTPReply {
        var buffer = channel.allocator.buffer(capacity: line.utf8.count + 2)
        buffer.writeString(line)
        buffer.writeString("\r\n")
        try await outbound.write(buffer)
        return try await reply(to: redacted ?? String(line.prefix(40)))
    }

    private func reply(to what: String) async throws -> SMTPReply {
        let channel = self.channel
        let fired = NIOLockedValueBox(false)
        let timer = channel.eventLoop.scheduleTask(in: config.commandTimeout) {
            fired.withLockedValue { $0 = true }
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        var iterator = replies
        defer { replies = iterator }
        do {
            guard let r = try await iterator.next() else {
                throw fired.withLockedValue { $0 } ? SMTPError.timeout(what) : SMTPError.closed
            }
            return r
        } catch let e as SMTPError {
            throw e
        } catch {
            throw fired.withLockedValue { $0 }
                ? SMTPError.timeout(what) : SMTPError.transport("\(error), waiting for the answer to \(what)")
        }
    }

    private func expect(_ r: SMTPReply, _ what: String) throws {
        guard r.isPositive else { throw SMTPError.refused(r, what) }
    }
}
