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
}
