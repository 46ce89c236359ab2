import Testing

@testable import Messaging

@Suite struct MIMETests {
    @Test func base64MatchesTheRFCVectors() {
        for (plain, encoded) in [
            ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy"),
        ] {
            #expect(MIME.base64(Array(plain.utf8)) == encoded)
        }
    }

    @Test func cyrillicSubjectsBecomeEncodedWordsThatNeverSplitALetter() {
        let subject = "Заявка L-2026-000001 принята в работу: ремонт кровли над третьим подъездом"
        let encoded = MIME.encodedWords(subject)
        let words = encoded.split(separator: "\r\n ").map(String.init)
        #expect(words.count > 1)
        var decoded = [UInt8]()
        for w in words {
            #expect(w.count <= 75)
            #expect(w.hasPrefix("=?utf-8?B?") && w.hasSuffix("?="))
            let bytes = Self.unbase64(String(w.dropFirst(10).dropLast(2)))
            // Each word is valid UTF-8 on its own (RFC 2047 §5: no character split between words).
            #expect(String(validating: bytes, as: UTF8.self) != nil)
            decoded += bytes
        }
        #expect(String(decoding: decoded, as: UTF8.self) == subject)
        #expect(MIME.encodedWords("Plain ASCII") == "Plain ASCII")
    }

    @Test func mailboxesQuoteOrEncodeTheName() {
        #expect(MIME.mailbox(name: "Зоя Крылова", address: "zoya@example.com").hasSuffix(" <zoya@example.com>"))
        #expect(MIME.mailbox(name: "Zoya K.", address: "z@example.com") == "\"Zoya K.\" <z@example.com>")
        #expect(MIME.mailbox(name: "", address: "z@example.com") == "<z@example.com>")
    }

    @Test func datesAreRFC5322() {
        #expect(MIME.rfc5322Date(millis: 0) == "Thu, 1 Jan 1970 00:00:00 +0000")
        #expect(MIME.rfc5322Date(millis: 1_796_378_400_000) == "Fri, 4 Dec 2026 10:00:00 +0000")
    }

    @Test func aMessageHasThreadingHeadersAndABase64Body() {
        let m = MailMessage(
            fromName: "Служба заявок", fromAddress: "desk@example.com", toName: "Зоя", toAddress: "zoya@example.com",
            subject: "Заявка L-2026-000001 принята", body: "Строка 1\n.Строка с точкой\n", messageID: "msg-2.L-2026-000001@example.com",
            inReplyTo: "msg-1.L-2026-000001@example.com", date: 0)
        let text = String(decoding: m.rendered(), as: UTF8.self)
        #expect(text.contains("\r\nMessage-ID: <msg-2.L-2026-000001@example.com>\r\n"))
        #expect(text.contains("\r\nIn-Reply-To: <msg-1.L-2026-000001@example.com>\r\nReferences: <msg-1.L-2026-000001@example.com>\r\n"))
        #expect(text.contains("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"))
        let body = text.components(separatedBy: "\r\n\r\n")[1].replacing("\r\n", with: "")
        #expect(String(decoding: Self.unbase64(body), as: UTF8.self) == "Строка 1\r\n.Строка с точкой\r\n")
        // Every line of the message fits SMTP's limit.
        #expect(text.split(separator: "\r\n").allSatisfy { $0.utf8.count <= 998 })
    }

    @Test func dotStuffingDoublesALeadingDot() {
        let out = SMTPConnection.dotStuffed(Array("a\r\n.b\r\n..c".utf8))
        #expect(String(decoding: out, as: UTF8.self) == "a\r\n..b\r\n...c\r\n")
    }

    static func unbase64(_ s: String) -> [UInt8] {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var out = [UInt8]()
        var acc: UInt32 = 0
        var bits = 0
        for c in s where c != "=" {
            guard let v = alphabet.firstIndex(of: c) else { continue }
            acc = acc << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((acc >> UInt32(bits)) & 0xFF))
            }
        }
        return out
    }
}
