#if canImport(Glibc)
    import Glibc
#endif

/// A small text file read whole (a password file, a template body), as UTF-8.
public enum TextFile {
    /// The file's text; nil when it cannot be opened.
    public static func read(_ path: String) -> String? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
