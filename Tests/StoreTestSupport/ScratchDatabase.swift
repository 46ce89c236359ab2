import Foundation

/// A fresh, empty database for one test: a SQLite file in a new temporary directory, or — when
/// LEADWIRE_TEST_DATABASE_URL names a PostgreSQL database (scripts/test runs the store suites a
/// second time that way, on a throwaway cluster) — a new schema in it. The same test body then
/// checks the same behaviour on both engines.
public struct ScratchDatabase: Sendable {
    /// What the store's `path` takes: the file, or the URL.
    public let path: String
    /// The PostgreSQL schema (ignored by SQLite).
    public let schema: String
    /// The directory of the SQLite file (a scratch directory on PostgreSQL too, for other files).
    public let directory: URL

    public static var onPostgres: Bool { ProcessInfo.processInfo.environment["LEADWIRE_TEST_DATABASE_URL"].map { !$0.isEmpty } ?? false }

    /// `file` names the SQLite file (e.g. "intake.sqlite").
    public init(_ file: String = "test.sqlite") {
        let id = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("store-test-\(id)")
        try! FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if let url = ProcessInfo.processInfo.environment["LEADWIRE_TEST_DATABASE_URL"], !url.isEmpty {
            path = url
            schema = "t_" + id.prefix(16)
        } else {
            path = directory.appendingPathComponent(file).path
            schema = "public"
        }
    }
}
