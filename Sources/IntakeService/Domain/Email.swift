import LeadwireAPI
import Wire

/// The parts of an RFC 5322 message intake needs: sender, subject, and the plain-text body (from a
/// single-part message or the first text/plain part of a multipart one), with base64,
/// quoted-printable and RFC 2047 encoded words decoded.
struct EmailMessage: Equatable {
    var fromName: String
    var fromAddress: String
    var subject: String
    var body: String

    enum Failure: Error, Equatable {
        case noHeaderSeparator
        case noSender
    }

    static func parse(_ raw: [UInt8]) throws(Failure) -> EmailMessage {
        let text = String(decoding: raw, as: UTF8.self).replacingCRLF
        guard let split = text.firstRange(of: "\n\n") else { throw .noHeaderSeparator }
        let headers = parseHeaders(String(text[..<split.lowerBound]))
        let body = String(text[split.upperBound...])
        guard let from = headers["from"], let (name, address) = parseAddress(from) else { throw .noSender }
        let subject = decodeWords(headers["subject"] ?? "")
        let plain = plainText(headers: headers, body: body)
        return EmailMessage(fromName: name, fromAddress: address, subject: subject, body: plain.trimmingSpaces)
    }

    /// Unfolds continuation lines; keys lower-cased; the first occurrence wins.
    static func parseHeaders(_ block: String) -> [String: String] {
        var out = [String: String]()
        var lines = [String]()
        for line in block.split(separator: "\n", omittingEmptySubsequences: false) {
            if let f = line.first, f == " " || f == "\t", !lines.isEmpty {
                lines[lines.count - 1] += " " + line.trimmingSpaces
            } else {
                lines.append(String(line))
            }
        }
        for l in lines {
            guard let colon = l.firstIndex(of: ":") else { continue }
            let key = l[..<colon].trimmingSpaces.lowercased()
            if out[key] == nil { out[key] = l[l.index(after: colon)...].trimmingSpaces }
        }
        return out
    }

    /// "Name <addr@x>", "addr@x", "\"Name\" <addr@x>".
    static func parseAddress(_ value: String) -> (String, String)? {
        if let lt = value.lastIndex(of: "<"), let gt = value.lastIndex(of: ">"), lt < gt {
            let addr = value[value.index(after: lt)..<gt].trimmingSpaces
            var name = decodeWords(value[..<lt].trimmingSpaces)
            if name.hasPrefix("\""), name.hasSuffix("\""), name.count >= 2 { name = String(name.dropFirst().dropLast()) }
            return addr.contains("@") ? (name, addr) : nil
        }
        let addr = value.trimmingSpaces
        return addr.contains("@") ? ("", addr) : nil
    }

    private static func plainText(headers: [String: String], body: String) -> String {
        let contentType = headers["content-type"] ?? "text/plain"
        let lower = contentType.lowercased()
        if lower.hasPrefix("multipart/"), let boundary = parameter(contentType, "boundary") {
            let delimiter = "--" + boundary
            for part in body.split(separator: delimiter, omittingEmptySubsequences: false).dropFirst() {
                if part.hasPrefix("--") { break }
                let p = part.hasPrefix("\n") ? String(part.dropFirst()) : String(part)
                guard let split = p.firstRange(of: "\n\n") else { continue }
                let h = parseHeaders(String(p[..<split.lowerBound]))
                let ct = (h["content-type"] ?? "text/plain").lowercased()
                if ct.hasPrefix("text/plain") {
                    return decodeBody(String(p[split.upperBound...]), encoding: h["content-transfer-encoding"])
                }
            }
            return ""
        }
        return decodeBody(body, encoding: headers["content-transfer-encoding"])
    }

    static func parameter(_ header: String, _ name: String) -> String? {
        for piece in header.split(separator: ";").dropFirst() {
            let kv = piece.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, kv[0].trimmingSpaces.lowercased() == name else { continue }
            var v = kv[1].trimmingSpaces
            if v.hasPrefix("\""), v.hasSuffix("\""), v.count >= 2 { v = String(v.dropFirst().dropLast()) }
            return v
        }
        return nil
    }

    private static func decodeBody(_ body: String, encoding: String?) -> String {
        switch encoding?.lowercased().trimmingSpaces {
        case "base64":
            return String(decoding: Base64.decode(body.filter { !$0.isWhitespace }.utf8) ?? Array(body.utf8), as: UTF8.self)
        case "quoted-printable":
            return String(decoding: quotedPrintable(body, underscoreIsSpace: false), as: UTF8.self)
        default:
            return body
        }
    }

    /// RFC 2047: =?charset?B?...?= and =?charset?Q?...?= (UTF-8 and ASCII-compatible charsets).
    static func decodeWords(_ s: String) -> String {
        var out = ""
        var rest = Substring(s)
        var lastWasWord = false
        while let start = rest.firstRange(of: "=?") {
            let before = rest[..<start.lowerBound]
            let afterStart = rest[start.upperBound...]
            let pieces = afterStart.split(separator: "?", maxSplits: 3, omittingEmptySubsequences: false)
            guard pieces.count == 4, pieces[3].hasPrefix("=") else {
                out += rest[..<start.upperBound]
                rest = afterStart
                lastWasWord = false
                continue
            }
            // Whitespace between two encoded words is dropped (RFC 2047 §6.2).
            if !(lastWasWord && before.allSatisfy { $0.isWhitespace }) { out += before }
            let encoding = pieces[1].uppercased()
            let text = String(pieces[2])
            let bytes = encoding == "B" ? (Base64.decode(text.utf8) ?? Array(text.utf8)) : quotedPrintable(text, underscoreIsSpace: true)
            out += String(decoding: bytes, as: UTF8.self)
            rest = pieces[3].dropFirst()
            lastWasWord = true
        }
        return out + rest
    }

    static func quotedPrintable(_ s: String, underscoreIsSpace: Bool) -> [UInt8] {
        let b = Array(s.utf8)
        var out = [UInt8]()
        var i = 0
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: c - 0x30
            case 0x41...0x46: c - 0x41 + 10
            case 0x61...0x66: c - 0x61 + 10
            default: nil
            }
        }
        while i < b.count {
            if b[i] == UInt8(ascii: "="), i + 1 < b.count, b[i + 1] == UInt8(ascii: "\n") {
                i += 2  // soft line break
            } else if b[i] == UInt8(ascii: "="), i + 2 < b.count, let h = hex(b[i + 1]), let l = hex(b[i + 2]) {
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(underscoreIsSpace && b[i] == UInt8(ascii: "_") ? UInt8(ascii: " ") : b[i])
                i += 1
            }
        }
        return out
    }
}

/// "@ivanov", "@anna.petrova@example.com", "@example.com" in a comment: people to bring in
/// (resolved against the directory by routing).
enum Mentions {
    static func find(in text: String) -> [String] {
        var out = [String]()
        var i = text.startIndex
        while let at = text[i...].firstIndex(of: "@") {
            let boundaryOK = at == text.startIndex || !(text[text.index(before: at)].isLetter || text[text.index(before: at)].isNumber)
            var j = text.index(after: at)
            while j < text.endIndex, text[j].isLetter || text[j].isNumber || "._-+@".contains(text[j]) { j = text.index(after: j) }
            var token = String(text[text.index(after: at)..<j])
            while let last = token.last, ".-@".contains(last) { token.removeLast() }
            if boundaryOK, !token.isEmpty, !out.contains(token.lowercased()) { out.append(token.lowercased()) }
            i = j > at ? j : text.index(after: at)
            if i >= text.endIndex { break }
        }
        return out
    }
}

extension String {
    var replacingCRLF: String {
        var s = ""
        s.reserveCapacity(utf8.count)
        var previousCR = false
        for c in unicodeScalars {
            if c == "\r" {
                previousCR = true
                s.unicodeScalars.append("\n")
                continue
            }
            if c == "\n" && previousCR {
                previousCR = false
                continue
            }
            previousCR = false
            s.unicodeScalars.append(c)
        }
        return s
    }
}
