import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Environment lookups without Foundation (keeps the services' binaries and start-up small).
public enum ProcessInfoEnv {
    public static func value(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        return String(cString: v)
    }

    /// A whole number from the environment, `fallback` when unset. A value that is set but is not a
    /// whole number is not silently replaced: it is recorded in `problems`, which a command's
    /// validation turns into a refusal to start.
    public static func int(_ name: String, default fallback: Int) -> Int {
        guard let text = value(name) else { return fallback }
        if let n = Int(text.trimmingCharacters(in: " \t")) { return n }
        problemsBox.withLockedValue { $0.append("\(name)=\(text) is not a whole number") }
        return fallback
    }

    /// Environment values that could not be read (see `int`).
    public static var problems: [String] { problemsBox.withLockedValue { $0 } }
    private static let problemsBox = NIOLockedValueBox<[String]>([])
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> Substring {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return s
    }
}

/// Prints a line to stdout and flushes it: supervisors and tests read "listening on ..." through a
/// pipe, where stdout is otherwise block-buffered.
public func printLine(_ line: String) {
    print(line)
    fflush(nil)  // nil flushes every stream; `stdout` itself is not concurrency-safe in Swift 6
}

/// Creates a directory and its parents (like `mkdir -p`); the data directory of a service.
public func makeDirectory(_ path: String) throws {
    var current = path.hasPrefix("/") ? "" : "."
    for part in path.split(separator: "/") {
        current += "/" + part
        if mkdir(current, 0o755) != 0 && errno != EEXIST {
            throw RPCError(.internal, "cannot create directory \(current): errno \(errno)")
        }
    }
}
