import Observability
import Store
import Testing
import Wire

/// Storage failures take one path to the caller: converted once, the SQLite detail kept as the
/// cause for the log and never put in what the caller reads.
@Suite struct ErrorPathTests {
    @Test func aStorageFailureIsUnavailableWithItsCauseKeptOutOfTheMessage() throws {
        let failure = StoreError(code: 10, message: "disk I/O error", sql: "INSERT INTO leads(id) VALUES (?)")
        let seen = RPCError.from(failure)
        #expect(seen.code == .unavailable)
        #expect(seen.message.contains("retry"))
        #expect(!seen.message.contains("disk I/O") && !seen.message.contains("INSERT"))
        #expect((seen.cause as? StoreError)?.message == "disk I/O error")
        // What the caller sees decides equality; the cause does not.
        #expect(seen == RPCError(.unavailable, seen.message))
    }

    @Test func anUnexpectedThrowIsUnknownWithItselfAsTheCause() {
        struct Oops: Error {}
        let seen = RPCError.from(Oops())
        #expect(seen.code == .unknown && seen.message == "the server failed to handle the call")
        #expect(seen.cause is Oops)
    }
}
