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
