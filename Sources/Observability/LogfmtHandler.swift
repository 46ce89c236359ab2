import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// Log records as logfmt lines on stderr: `2026-11-29T10:15:02.123Z info intake-service: rpc
/// method=/leadwire.intake.v1.Intake/GetLead status=NOT_FOUND message="no lead …"`.
///
/// Values reach the log from callers (ids echoed in refusals, token subjects, peers, paths), so
/// every value is quoted when it needs to be and every control character is escaped: a value can
/// never end the line or start a forged one. Values are also capped in length, so one hostile
/// request cannot write a megabyte into the log.
public struct LogfmtHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String

    /// The most characters of one value written; the rest becomes "…".
    public static let valueLimit = 512

    public init(label: String, level: Logger.Level = .info) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { _, new in new } }
        var line = Self.timestamp()
        line +=
            " \(event.level) \(Self.escape(label, quoteIfNeeded: false)): \(Self.escape(event.message.description, quoteIfNeeded: false))"
        for key in fields.keys.sorted() {
            line += " \(Self.key(key))=\(Self.escape(fields[key]!.description, quoteIfNeeded: true))"
        }
        line += "\n"
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(2, buffer.baseAddress! + offset, buffer.count - offset)
                if written <= 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }

    /// A key is ours (a literal in the code), but is kept to `[A-Za-z0-9_.-]` all the same.
    static func key(_ key: String) -> String {
        String(
            key.unicodeScalars.map { scalar -> Character in
                switch scalar {
                case "a"..."z", "A"..."Z", "0"..."9", "_", ".", "-": return Character(scalar)
                default: return "_"
                }
            })
    }

    /// The value as logfmt writes it: bare when it is plain, else in double quotes with `"` and `\`
    /// escaped; control and line-separator characters are always escaped (`\n`, `\t`, `\u001b`).
    public static func escape(_ value: String, quoteIfNeeded: Bool) -> String {
        var out = ""
        var needsQuotes = value.isEmpty
        var count = 0
        for scalar in value.unicodeScalars {
            if count == valueLimit {
                out += "…"
                break
            }
            count += 1
            switch scalar {
            case "\n":
                out += "\\n"
                needsQuotes = true
            case "\r":
                out += "\\r"
                needsQuotes = true
            case "\t":
                out += "\\t"
                needsQuotes = true
            case "\"":
                out += "\\\""
                needsQuotes = true
            case "\\":
                out += "\\\\"
                needsQuotes = true
            case " ", "=":
                out.unicodeScalars.append(scalar)
                needsQuotes = true
            default:
                if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                    needsQuotes = true
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return quoteIfNeeded && needsQuotes ? "\"\(out)\"" : out
    }

    /// UTC, milliseconds: `2026-11-29T10:15:02.123Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ n: Int32, _ width: Int) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(now.tv_nsec / 1_000_000), 3))Z"
    }
}
