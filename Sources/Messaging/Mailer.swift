import CoreMetrics
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import Store

/// Where a person in routing's directory is reached, as the mailer needs it.
public struct PersonAddress: Sendable {
    public var name: String
    public var email: String
    public var phone: String

    public init(name: String, email: String, phone: String) {
        self.name = name
        self.email = email
        self.phone = phone
    }
}

/// How soon a message the relay could not take now is tried again: doubling from `first` up to
/// `longest`, forever (a message is never dropped for being late; only a 5xx sets it aside).
public struct RetryPolicy: Sendable {
    public var first: Duration
    public var longest: Duration

    public init(first: Duration = .seconds(30), longest: Duration = .seconds(3600)) {
        self.first = first
        self.longest = longest
    }

    /// Milliseconds to wait after the `attempts`-th failed attempt (1 = the first).
    public func delayMillis(afterAttempts attempts: Int) -> Int64 {
        let first = Self.millis(self.first)
        let longest = Self.millis(self.longest)
        var d = first
        var n = 1
        while n < attempts && d < longest {
            d *= 2
            n += 1
        }
        return min(d, longest)
    }

    static func millis(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }
}

/// Delivers queued e-mail to the SMTP relay: one connection per batch, messages in the order
/// they were queued, each marked sent only after the relay's 250 for it (at-least-once; the
/// Message-ID is the same on every attempt). A 4xx or a failed connection retries with backoff;
/// a 5xx sets the message aside with the relay's answer. Staff addresses are looked up in
/// routing's directory first (a person without e-mail but with a phone goes to the SMS gateway).
public final class Mailer: Service, Sendable {
    let queue: MessageQueue
    /// nil: no relay of our own; e-mail waits for the gateway (TakeReplies) like SMS.
    let smtp: SMTPConfiguration?
    let retry: RetryPolicy
    let lookUp: (@Sendable (String) async throws -> PersonAddress?)?
    /// The file a message names in its "attachment" value (a proposal's PDF), made when it is sent.
    let attach: (@Sendable (String) async throws -> MailAttachment?)?
    let now: @Sendable () -> Int64
    let logger: Logger
    let batchSize: Int
    private let woken = NIOLockedValueBox(false)

    private let sent: Counter
    private let retried: Counter
    private let setAside: Counter
    private let pending: Gauge
    private let lag: Gauge

    public init(
        queue: MessageQueue, smtp: SMTPConfiguration?, retry: RetryPolicy = RetryPolicy(),
        lookUp: (@Sendable (String) async throws -> PersonAddress?)?, attach: (@Sendable (String) async throws -> MailAttachment?)? = nil,
        now: @escaping @Sendable () -> Int64, logger: Logger, batchSize: Int = 50
    ) {
        self.queue = queue
        self.attach = attach
        self.smtp = smtp
        self.retry = retry
        self.lookUp = lookUp
        self.now = now
        self.logger = logger
        self.batchSize = batchSize
        sent = Counter(label: "leadwire_messages_sent_total", dimensions: [("channel", "email")])
        retried = Counter(label: "leadwire_messages_retried_total", dimensions: [("channel", "email")])
        setAside = Counter(label: "leadwire_messages_failed_total", dimensions: [("channel", "email")])
        pending = Gauge(label: "leadwire_messages_pending", dimensions: [("channel", "email")])
        lag = Gauge(label: "leadwire_messages_lag_seconds", dimensions: [("channel", "email")])
    }

    /// Something was queued: deliver now rather than at the next poll.
    public func wake() { woken.withLockedValue { $0 = true } }

    public func run() async throws {
        if let smtp {
            logger.info(
                "e-mail delivery on",
                metadata: ["smtp": "\(smtp.host):\(smtp.port)", "security": "\(smtp.security.rawValue)", "from": "\(smtp.fromAddress)"])
        } else {
            logger.info("no SMTP relay configured (--smtp-host): messages wait for a gateway (TakeReplies) and show in ListMessages")
        }
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.deliverLoop() }
                if self.smtp != nil { group.addTask { await self.watchBacklog() } }
            }
        }
    }

    private func deliverLoop() async {
        while !Task.isCancelled {
            woken.withLockedValue { $0 = false }
            let worked: Int
            do {
                worked = try await deliverOnce()
            } catch {
                logger.warning("message delivery failed; retrying", metadata: ["error": "\(error)"])
                worked = 0
            }
            if worked == 0 {
                // Idle: a wake-up (something queued) or the next second (retries fall due by the clock).
                for _ in 0..<10 where !Task.isCancelled && !woken.withLockedValue({ $0 }) {
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
        }
    }

    /// One pass: addresses looked up, then the due e-mail sent over one connection. Returns how
    /// many messages were settled (sent, set aside, or moved on to SMS).
    @discardableResult
    public func deliverOnce() async throws -> Int {
        var settled = try await resolveAddresses()
        guard let smtp else { return settled }
        let batch = try await queue.due(channels: ["email"], now: now(), limit: batchSize)
        guard !batch.isEmpty else { return settled }
        do {
            return try await SMTPConnection.withSession(smtp) { connection in
                for m in batch {
                    var mail = MailMessage(
                        fromName: smtp.fromName, fromAddress: smtp.fromAddress, toName: m.recipientName, toAddress: m.recipient,
                        subject: m.subject, body: m.body, messageID: m.messageID, inReplyTo: m.inReplyTo.isEmpty ? nil : m.inReplyTo,
                        date: now(), headers: m.registrationNumber.isEmpty ? [] : [("X-Leadwire-Lead", m.registrationNumber)])
                    if let reference = m.values["attachment"], !reference.isEmpty, let attach {
                        // Made now, from what is stored: a retry sends the same document.
                        if let file = try await attach(reference) { mail.attachments = [file] }
                    }
                    let outcome: SMTPOutcome
                    do {
                        outcome = try await connection.send(mail)
                    } catch {
                        // The connection broke: this message and the rest of the batch wait.
                        logger.warning(
                            "the SMTP connection failed mid-batch; retrying later", metadata: ["error": "\(error)", "message": "\(m.id)"])
                        try await postpone(m, "\(error)")
                        return settled
                    }
                    switch outcome {
                    case .sent:
                        try await queue.markSent(m, now: now())
                        sent.increment()
                        settled += 1
                    case .transient(let why):
                        try await postpone(m, why)
                    case .permanent(let why):
                        logger.error(
                            "the SMTP relay refused a message for good; set aside",
                            metadata: ["message": "\(m.id)", "kind": "\(m.kind)", "to": "\(m.recipient)", "answer": "\(why)"])
                        try await queue.markFailed(m.row, error: why, now: now())
                        setAside.increment()
                        settled += 1
                    }
                }
                return settled
            }
        } catch let e as SMTPError {
            // A refused login or handshake is the relay's answer to us, not to a message: every
            // message waits (with backoff) until the relay or the setting is fixed.
            return try await connectionFailed(batch, "\(e)")
        } catch let e as StoreError {
            throw e
        } catch {
            return try await connectionFailed(batch, "\(error)")
        }
    }

    private func connectionFailed(_ batch: [QueuedMessage], _ why: String) async throws -> Int {
        logger.warning("cannot reach the SMTP relay; the messages stay queued", metadata: ["error": "\(why)", "queued": "\(batch.count)"])
        // Messages the relay already took in this batch are sent; postponing them changes nothing.
        for m in batch { try await postpone(m, why) }
        return 0
    }

    private func postpone(_ m: QueuedMessage, _ why: String) async throws {
        let delay = retry.delayMillis(afterAttempts: m.attempts + 1)
        try await queue.markRetry(m.row, error: why, nextAttemptAt: now() + delay)
        retried.increment()
    }

    /// Staff messages name a person: their e-mail (or phone) comes from routing's directory.
    private func resolveAddresses() async throws -> Int {
        let waiting = try await queue.due(channels: [""], now: now(), limit: batchSize, rendered: false)
        guard !waiting.isEmpty else { return 0 }
        var settled = 0
        for m in waiting {
            guard let lookUp else {
                try await queue.markFailed(m.row, error: "no routing service is configured to look up \(m.personID)'s address", now: now())
                settled += 1
                continue
            }
            do {
                guard let person = try await lookUp(m.personID) else {
                    try await queue.markFailed(m.row, error: "\(m.personID) is not in routing's directory", now: now())
                    settled += 1
                    continue
                }
                if !person.email.trimmingSpaces.isEmpty {
                    try await queue.address(m.row, channel: "email", recipient: person.email.trimmingSpaces, name: person.name)
                } else if !person.phone.trimmingSpaces.isEmpty {
                    try await queue.address(m.row, channel: "sms", recipient: person.phone.trimmingSpaces, name: person.name)
                    settled += 1
                } else {
                    try await queue.markFailed(
                        m.row, error: "\(m.personID) has neither e-mail nor phone in routing's directory", now: now())
                    settled += 1
                }
            } catch {
                try await postpone(m, "cannot look up \(m.personID) in routing's directory: \(error)")
            }
        }
        return settled
    }

    private func watchBacklog() async {
        while !Task.isCancelled {
            if let b = try? await queue.backlog(channels: ["email", ""]) {
                pending.record(b.count)
                lag.record(Double(b.oldest.map { max(0, now() - $0) } ?? 0) / 1000)
            }
            try? await Task.sleep(for: .seconds(2))
        }
    }
}
