import LeadwireAPI

/// An e-mail as RFC 5322 + MIME write it: UTF-8 text body in base64, non-ASCII header words as
/// RFC 2047 encoded words, lines folded under 78 characters, CRLF line ends.
public struct MailMessage: Sendable, Equatable {
    public var fromName: String
    public var fromAddress: String
    public var toName: String
    public var toAddress: String
    public var subject: String
    public var body: String
    /// Without the angle brackets: "msg-12.L-2026-000001@example.com".
    public var messageID: String
    /// The message this one answers, for threading (In-Reply-To and References).
    public var inReplyTo: String?
    /// Milliseconds since the epoch.
    public var date: Int64
    /// Extra headers, e.g. ("X-Leadwire-Lead", "L-2026-000001").
    public var headers: [(String, String)] = []
    /// Files sent with the text (a proposal's PDF): the message becomes multipart/mixed.
    public var attachments: [MailAttachment] = []

    public init(
        fromName: String, fromAddress: String, toName: String, toAddress: String, subject: String, body: String, messageID: String,
        inReplyTo: String? = nil, date: Int64, headers: [(String, String)] = []
    ) {
        self.fromName = fromName
        self.fromAddress = fromAddress
        self.toName = toName
        self.toAddress = toAddress
        self.subject = subject
        self.body = body
        self.messageID = messageID
        self.inReplyTo = inReplyTo
        self.date = date
        self.headers = headers
    }

    public static func == (a: MailMessage, b: MailMessage) -> Bool {
        a.rendered() == b.rendered()
    }

    /// The whole message, ready for SMTP DATA (before dot-stuffing, which the client does).
    public func rendered() -> [UInt8] {
        var h = [String]()
        h.append(MIME.field("Date", MIME.rfc5322Date(millis: date)))
        h.append(MIME.field("From", MIME.mailbox(name: fromName, address: fromAddress)))
        h.append(MIME.field("To", MIME.mailbox(name: toName, address: toAddress)))
        h.append(MIME.field("Subject", MIME.encodedWords(subject)))
        h.append(MIME.field("Message-ID", "<\(messageID)>"))
        if let r = inReplyTo, !r.isEmpty {
            h.append(MIME.field("In-Reply-To", "<\(r)>"))
            h.append(MIME.field("References", "<\(r)>"))
        }
        for (name, value) in headers { h.append(MIME.field(name, MIME.encodedWords(value))) }
        h.append("MIME-Version: 1.0")
        let text = MIME.base64Lines(Array(body.replacingOccurrencesOfLineEnds().utf8))
        guard !attachments.isEmpty else {
            h.append("Content-Type: text/plain; charset=utf-8")
            h.append("Content-Transfer-Encoding: base64")
            return Array((h.joined(separator: "\r\n") + "\r\n\r\n" + text).utf8)
        }
        // "=_" cannot occur in base64 text, so no part can contain the boundary line.
        let boundary =
            "=_leadwire_"
            + String(messageID.utf8.reduce(UInt64(14_695_981_039_346_656_037)) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 }, radix: 36)
        h.append("Content-Type: multipart/mixed; boundary=\"\(boundary)\"")
        var out = h.joined(separator: "\r\n") + "\r\n\r\n"
        out += "--\(boundary)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + text
        for a in attachments {
            out += "--\(boundary)\r\n"
            out += "Content-Type: \(a.contentType); name=\"\(MIME.encodedWords(a.fileName))\"\r\n"
            out += "Content-Disposition: attachment; filename*=utf-8''\(MIME.percentEncoded(a.fileName))\r\n"
            out += "Content-Transfer-Encoding: base64\r\n\r\n" + MIME.base64Lines(a.bytes)
        }
        out += "--\(boundary)--\r\n"
        return Array(out.utf8)
    }
}

/// A file attached to an e-mail.
public struct MailAttachment: Sendable, Equatable {
    public var fileName: String
    public var contentType: String
    public var bytes: [UInt8]

    public init(fileName: String, contentType: String, bytes: [UInt8]) {
        self.fileName = fileName
        self.contentType = contentType
        self.bytes = bytes
    }
}

extension String {
    /// CRLF line ends throughout (the body of an e-mail).
    fileprivate func replacingOccurrencesOfLineEnds() -> String {
        var out = ""
        out.reserveCapacity(utf8.count + 16)
        for scalar in unicodeScalars {
            switch scalar {
            case "\r": continue
            case "\n": out += "\r\n"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

/// The encodings e-mail needs; each is a pure function, tested against Python's email parser.
public enum MIME {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Base64 in lines of 76 characters, each ending in CRLF (a MIME body).
    static func base64Lines(_ bytes: [UInt8]) -> String {
        let encoded = base64(bytes)
        var out = ""
        out.reserveCapacity(encoded.utf8.count + encoded.utf8.count / 38 + 2)
        var i = encoded.startIndex
        while i < encoded.endIndex {
            let end = encoded.index(i, offsetBy: 76, limitedBy: encoded.endIndex) ?? encoded.endIndex
            out += encoded[i..<end]
            out += "\r\n"
            i = end
        }
        return out
    }

    /// RFC 2231/5987 percent-encoding of a UTF-8 file name (filename*=utf-8''…).
    static func percentEncoded(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out = ""
        for b in text.utf8 {
            let safe =
                (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x2E || b == 0x5F
            if safe {
                out.unicodeScalars.append(UnicodeScalar(b))
            } else {
                out += "%" + String(UnicodeScalar(hex[Int(b >> 4)])) + String(UnicodeScalar(hex[Int(b & 15)]))
            }
        }
        return out
    }

    public static func base64(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 2 < bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)]]
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], UInt8(ascii: "="), UInt8(ascii: "=")]
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], UInt8(ascii: "=")]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Printable ASCII without line breaks passes as it is; anything else becomes RFC 2047 "B"
    /// encoded words of at most 75 characters, each holding whole characters (a Cyrillic letter
    /// is never split between two words), separated by folding white space.
    public static func encodedWords(_ text: String) -> String {
        let plain = text.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F } && !text.contains("=?")
        if plain { return text }
        // "=?utf-8?B?" + base64 + "?=" <= 75: base64 of at most 45 bytes (60 characters).
        var words = [String]()
        var chunk = [UInt8]()
        for ch in text {
            let bytes = Array(String(ch).utf8.filter { $0 != 0x0D && $0 != 0x0A })
            if chunk.count + bytes.count > 45, !chunk.isEmpty {
                words.append("=?utf-8?B?\(base64(chunk))?=")
                chunk = []
            }
            chunk += bytes
        }
        if !chunk.isEmpty { words.append("=?utf-8?B?\(base64(chunk))?=") }
        return words.joined(separator: "\r\n ")
    }

    /// `Name <address>`: the name as encoded words when it is not plain ASCII, quoted when it has
    /// specials; the bare address without a name.
    public static func mailbox(name: String, address: String) -> String {
        let n = name.trimmingSpacesAndBreaks
        guard !n.isEmpty else { return "<\(address)>" }
        let ascii = n.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
        if !ascii { return "\(encodedWords(n)) <\(address)>" }
        let specials = Set("()<>[]:;@\\,.\"")
        if n.contains(where: { specials.contains($0) }) {
            return "\"\(n.replacing("\\", with: "\\\\").replacing("\"", with: "\\\""))\" <\(address)>"
        }
        return "\(n) <\(address)>"
    }

    /// A header line; values already folded by encodedWords keep their breaks.
    static func field(_ name: String, _ value: String) -> String { "\(name): \(value)" }

    private static let days = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// "Mon, 30 Nov 2026 02:30:00 +0000".
    public static func rfc5322Date(millis: Int64) -> String {
        let seconds = millis >= 0 ? millis / 1000 : (millis - 999) / 1000
        let day = Int(seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400)
        let inDay = Int(seconds - Int64(day) * 86_400)
        let c = CalendarDate.civil(day: day)
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let weekday = days[((day % 7) + 7) % 7]
        return "\(weekday), \(c.day) \(months[c.month - 1]) \(c.year) \(two(inDay / 3600)):\(two(inDay / 60 % 60)):\(two(inDay % 60)) +0000"
    }
}

extension String {
    fileprivate var trimmingSpacesAndBreaks: String {
        String(unicodeScalars.filter { $0 != "\r" && $0 != "\n" }).trimmingSpaces
    }
}
