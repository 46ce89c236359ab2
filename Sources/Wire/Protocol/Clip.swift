/// Shortens text that came from a caller before it is echoed back in a status message or written
/// to a log: a 66,000-character id must not become a 66 KB `grpc-message`, and a refusal that
/// repeats the caller's input stays readable.
public enum Clip {
    /// The most characters (Unicode scalars) of a caller's value echoed in a message.
    public static let echoLimit = 100

    /// `value` itself when short, else its first `limit` scalars followed by "…".
    public static func value(_ value: String, limit: Int = echoLimit) -> String {
        var count = 0
        for index in value.unicodeScalars.indices {
            if count == limit { return String(value.unicodeScalars[..<index]) + "…" }
            count += 1
        }
        return value
    }

    /// `text` cut to at most `maxBytes` of UTF-8 on a scalar boundary, "…" marking the cut: what goes
    /// into `grpc-message`, which clients limit (grpcio's metadata limit is 8 KiB) and nghttp2 caps.
    public static func bytes(_ text: String, maxBytes: Int) -> String {
        guard text.utf8.count > maxBytes else { return text }
        var used = 0
        var end = text.unicodeScalars.startIndex
        for index in text.unicodeScalars.indices {
            let n = text.unicodeScalars[index].utf8.count
            if used + n > maxBytes - 3 { break }
            used += n
            end = text.unicodeScalars.index(after: index)
        }
        return String(text.unicodeScalars[..<end]) + "…"
    }
}
