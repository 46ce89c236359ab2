import Foundation
import Store
import Testing

@testable import Messaging

/// The queue on a real SQLite file: rendering at enqueue, template scopes, threading, the states.
@Suite struct QueueTests {
    func queue() throws -> MessageQueue {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("messaging-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let db = try Database(
            configuration: .init(path: dir.appendingPathComponent("m.sqlite").path),
            migrations: [Migration(1, "messages", MessageQueue.schema)])
        return MessageQueue(db: db, domain: "example.com", defaultLocale: .ru)
    }

    func registered(_ q: MessageQueue, email: String = "zoya@example.com", phone: String = "", preferPhone: Bool = false) -> OutgoingMessage
    {
        var m = OutgoingMessage(
            kind: .leadRegistered, locale: .ru, recipientName: "Зоя Крылова",
            values: ["number": "L-2026-000001", "subject": "Отопление", "answer_date": "4 декабря 2026 г."])
        m.email = email
        m.phone = phone
        m.preferPhone = preferPhone
        m.leadID = "lead-1"
        m.registrationNumber = "L-2026-000001"
        m.scopes = ["source:src-1"]
        return m
    }

    @Test func enqueueRendersTheTemplateInForceAndThreadsLaterMessages() async throws {
        let q = try queue()
        try await q.db.write { db in
            _ = try q.enqueue(db, registered(q), now: 10)
            var accepted = registered(q)
            accepted.kind = .leadAccepted
            accepted.values["due_date"] = "14 декабря 2026 г."
            _ = try q.enqueue(db, accepted, now: 11)
        }
        let all = try await q.list(.init(), limit: 10)
        #expect(all.count == 2)
        let (second, first) = (all[0], all[1])
        #expect(first.subject == "Заявка L-2026-000001 зарегистрирована")
        #expect(
            first.body.hasPrefix("Здравствуйте, Зоя Крылова!\n\nВаше обращение «Отопление» зарегистрировано под номером L-2026-000001."))
        #expect(first.messageID == "registered.L-2026-000001@example.com" && first.inReplyTo.isEmpty)
        #expect(second.inReplyTo == first.messageID)
        #expect(second.body.contains("Срок выполнения — до 14 декабря 2026 г."))
        #expect((first.channel, first.recipient, first.state) == ("email", "zoya@example.com", .queued))
    }

    @Test func aLeadsNumberAndReferenceComeFromTheRowWhenNotGivenAsValues() async throws {
        let q = try queue()
        try await q.putTemplate(kind: .mentioned, locale: .ru, scope: "", subject: "{reference}", body: "{number}", actor: "a", now: 1)
        try await q.db.write { db in
            var m = registered(q)
            m.values["number"] = nil
            _ = try q.enqueue(db, m, now: 10)
            var staff = OutgoingMessage(kind: .mentioned, locale: .ru, recipientName: "", values: [:])
            staff.personID = "p-1"
            staff.leadID = "lead-1"
            staff.registrationNumber = "L-2026-000001"
            _ = try q.enqueue(db, staff, now: 11)
        }
        let all = try await q.list(.init(), limit: 10)
        #expect(all.map(\.subject) == ["L-2026-000001 (lead-1)", "Заявка L-2026-000001 зарегистрирована"])
        #expect(all[0].body.hasPrefix("L-2026-000001"))
    }

    @Test func theMostSpecificStoredTextWins() async throws {
        let q = try queue()
        try await q.putTemplate(kind: .leadRegistered, locale: .ru, scope: "", subject: "Общая {number}", body: "общая", actor: "a", now: 1)
        try await q.putTemplate(
            kind: .leadRegistered, locale: .ru, scope: "source:src-1", subject: "Своя {number}", body: "своя {name}", actor: "a", now: 1)
        try await q.db.write { db in
            _ = try q.enqueue(db, registered(q), now: 10)
            var other = registered(q)
            other.scopes = ["source:src-2"]
            _ = try q.enqueue(db, other, now: 10)
        }
        #expect(try await q.list(.init(), limit: 10).map(\.subject) == ["Общая L-2026-000001", "Своя L-2026-000001"])
        #expect(try await q.resetTemplate(kind: .leadRegistered, locale: .ru, scope: "source:src-1"))
        #expect(try await q.template(kind: .leadRegistered, locale: .ru, scope: "source:src-1").subjectText == "Общая {number}")
        #expect(try await q.resetTemplate(kind: .leadRegistered, locale: .ru, scope: ""))
        #expect(try await q.template(kind: .leadRegistered, locale: .ru, scope: "").stock)
    }

    @Test func channelsFollowWhatIsKnownOfTheRecipient() async throws {
        let q = try queue()
        let rows = try await q.db.write { db in
            [
                try q.enqueue(db, registered(q, email: "", phone: "+79123456789"), now: 1),
                try q.enqueue(db, registered(q, email: "a@example.com", phone: "+79123456789", preferPhone: true), now: 1),
                try q.enqueue(db, registered(q, email: "", phone: ""), now: 1),
            ]
        }
        #expect(rows[2] == nil, "nobody to send to: nothing queued")
        let listed = try await q.list(.init(), limit: 10)
        #expect(listed.map(\.channel) == ["sms", "sms"])
        var staff = OutgoingMessage(kind: .mentioned, locale: .ru, recipientName: "", values: ["number": "L-2026-000001"])
        staff.personID = "person-3"
        let person = staff
        try await q.db.write { db in _ = try q.enqueue(db, person, now: 2) }
        let due = try await q.due(channels: [""], now: 2, limit: 10)
        #expect(due.map(\.personID) == ["person-3"])
        #expect(due[0].body.hasPrefix("Здравствуйте!\n"))
        try await q.address(due[0].row, channel: "email", recipient: "irina@corp.test", name: "Ирина Петрова")
        let addressed = try #require(try await q.message(due[0].row))
        #expect((addressed.recipient, addressed.recipientName) == ("irina@corp.test", "Ирина Петрова"))
        #expect(addressed.body.hasPrefix("Здравствуйте, Ирина Петрова!\n"), "the greeting names the person once known")
    }

    @Test func statesMoveOnlyForward() async throws {
        let q = try queue()
        try await q.db.write { db in _ = try q.enqueue(db, registered(q), now: 1) }
        try await q.markRetry(1, error: "421 try later", nextAttemptAt: 100)
        #expect(try await q.due(channels: ["email"], now: 50, limit: 10).isEmpty, "not due before its next attempt")
        #expect(try await q.due(channels: ["email"], now: 100, limit: 10).count == 1)
        try await q.markFailed(1, error: "550 no such mailbox", now: 120)
        #expect(try await q.message(1)?.state == .failed)
        #expect(try await q.confirm([1], now: 130) == 0, "a set-aside message is not confirmed by a gateway")
        #expect(try await q.retry(1, now: 140)?.state == .queued)
        #expect(try await q.confirm([1], now: 150) == 1)
        #expect(try await q.confirm([1], now: 160) == 0)
        let m = try #require(try await q.message(1))
        #expect((m.state, m.attempts, m.sentAt) == (.sent, 2, 150))
    }
}

@Suite struct MessageValuesTests {
    @Test func valuesRoundTripThroughTheirEncoding() {
        let values = [
            "comment": String(repeating: "Длинный комментарий. ", count: 40), "number": "L-2026-000001", "empty": "", "∑": "\u{0}\u{1F}",
        ]
        #expect(MessageValues.decode(MessageValues.encode(values)) == values)
        // Sized before it is written: a value whose length takes two and three bytes of varint.
        let long = ["a": String(repeating: "x", count: 200), "b": String(repeating: "я", count: 9000)]
        let bytes = MessageValues.encode(long)
        #expect(bytes.count == (1 + 1) + (2 + 200) + (1 + 1) + (3 + 18000))
        #expect(MessageValues.decode(bytes) == long)
        #expect(MessageValues.decode([0x85]) == [:], "a truncated length is no value, not a crash")
        #expect(MessageValues.decode([0x05, 0x61]) == [:])
    }
}
