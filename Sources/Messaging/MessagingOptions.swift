import ArgumentParser
import Wire

/// The command-line and environment settings for messages, the same in intake and report. SMTP is
/// off until --smtp-host (LEADWIRE_SMTP_HOST) is given: messages then wait in the queue, visible in
/// `leadctl messages`, for a gateway (TakeReplies).
public struct MessagingOptions: ParsableArguments {
    public init() {}

    @Option(help: "Language of messages where a source or contractor does not say: ru or en (env LEADWIRE_LOCALE).")
    public var locale: String = ProcessInfoEnv.value("LEADWIRE_LOCALE") ?? "ru"

    @Option(
        name: .customLong("smtp-host"),
        help: "SMTP relay to deliver e-mail to; empty = no e-mail delivery of our own (env LEADWIRE_SMTP_HOST).")
    public var smtpHost: String = ProcessInfoEnv.value("LEADWIRE_SMTP_HOST") ?? ""

    @Option(
        name: .customLong("smtp-port"), help: "SMTP relay port; 0 = 587, or 465 with --smtp-security tls (env LEADWIRE_SMTP_PORT).")
    public var smtpPort: Int = ProcessInfoEnv.value("LEADWIRE_SMTP_PORT").flatMap(Int.init) ?? 0

    @Option(
        name: .customLong("smtp-security"),
        help: "none, starttls (when offered), require-starttls, or tls (from the first byte) (env LEADWIRE_SMTP_SECURITY).")
    public var smtpSecurity: String = ProcessInfoEnv.value("LEADWIRE_SMTP_SECURITY") ?? "starttls"

    @Option(name: .customLong("smtp-user"), help: "AUTH user name; empty = no AUTH (env LEADWIRE_SMTP_USER).")
    public var smtpUser: String = ProcessInfoEnv.value("LEADWIRE_SMTP_USER") ?? ""

    @Option(
        name: .customLong("smtp-password-file"),
        help: "File holding the AUTH password (env LEADWIRE_SMTP_PASSWORD_FILE; LEADWIRE_SMTP_PASSWORD is read too).")
    public var smtpPasswordFile: String = ProcessInfoEnv.value("LEADWIRE_SMTP_PASSWORD_FILE") ?? ""

    @Option(name: .customLong("smtp-from"), help: "The From address and envelope sender (env LEADWIRE_SMTP_FROM).")
    public var smtpFrom: String = ProcessInfoEnv.value("LEADWIRE_SMTP_FROM") ?? ""

    @Option(name: .customLong("smtp-from-name"), help: "The From display name (env LEADWIRE_SMTP_FROM_NAME).")
    public var smtpFromName: String = ProcessInfoEnv.value("LEADWIRE_SMTP_FROM_NAME") ?? ""

    @Option(
        name: .customLong("smtp-ca"),
        help: "PEM file of the CA the relay's certificate chains to; default the system's (env LEADWIRE_SMTP_CA).")
    public var smtpCA: String = ProcessInfoEnv.value("LEADWIRE_SMTP_CA") ?? ""

    @Option(
        name: .customLong("smtp-retry-seconds"),
        help: "First wait before a message the relay did not take is tried again; doubles up to an hour (env LEADWIRE_SMTP_RETRY_SECONDS).")
    public var smtpRetrySeconds: Double = ProcessInfoEnv.value("LEADWIRE_SMTP_RETRY_SECONDS").flatMap(Double.init) ?? 30

    public func validate() throws {
        guard MessageLocale(code: locale) != nil else { throw ValidationError("--locale takes ru or en, not \(locale)") }
        guard SMTPConfiguration.Security(rawValue: smtpSecurity) != nil else {
            throw ValidationError(
                "--smtp-security takes one of \(SMTPConfiguration.Security.allCases.map(\.rawValue).joined(separator: ", ")), not \(smtpSecurity)"
            )
        }
        if !smtpHost.isEmpty && !smtpFrom.contains("@") {
            throw ValidationError("--smtp-from must be an e-mail address when --smtp-host is set (got \"\(smtpFrom)\")")
        }
        guard smtpRetrySeconds > 0 else { throw ValidationError("--smtp-retry-seconds must be above 0") }
        guard (0...65535).contains(smtpPort) else {
            throw ValidationError("--smtp-port must be 1 to 65535 (0 = the default), not \(smtpPort)")
        }
    }

    public var defaultLocale: MessageLocale { MessageLocale(code: locale) ?? .ru }

    public var retry: RetryPolicy {
        RetryPolicy(first: .milliseconds(Int64(smtpRetrySeconds * 1000)), longest: .seconds(3600))
    }

    /// nil without --smtp-host. A password file that cannot be read is an error at start, not at the first message.
    public func smtp() throws -> SMTPConfiguration? {
        guard !smtpHost.isEmpty else { return nil }
        let security = SMTPConfiguration.Security(rawValue: smtpSecurity) ?? .starttls
        var password = ProcessInfoEnv.value("LEADWIRE_SMTP_PASSWORD")
        if !smtpPasswordFile.isEmpty {
            guard let text = TextFile.read(smtpPasswordFile) else {
                throw ValidationError("cannot read --smtp-password-file \(smtpPasswordFile)")
            }
            password = text.trimmingSpaces
        }
        return SMTPConfiguration(
            host: smtpHost, port: smtpPort > 0 ? smtpPort : (security == .tls ? 465 : 587), security: security,
            username: smtpUser.isEmpty ? nil : smtpUser, password: password, caPath: smtpCA.isEmpty ? nil : smtpCA,
            fromAddress: smtpFrom, fromName: smtpFromName)
    }

    /// The domain for Message-IDs: the From address's, or a local name without SMTP.
    public var messageDomain: String {
        guard let at = smtpFrom.lastIndex(of: "@"), smtpFrom.index(after: at) < smtpFrom.endIndex else { return "leadwire.localhost" }
        return String(smtpFrom[smtpFrom.index(after: at)...])
    }
}
