/// What a call's task waits on while its connection's loop gets a message, room to send, or its
/// response headers.
///
/// Debug builds, and so every test suite and the AddressSanitizer run, use the checked kind, which
/// traps on a second resume and reports one never resumed. Release builds use the unchecked kind:
/// `CheckedContinuation` is a resilient type of the concurrency library, so each copy or destruction
/// of the optional one a call keeps went through the runtime's value witnesses instead of moving a
/// pointer (~1,500 instructions of a unary call's ~43,000, counted with scripts/bench-instructions).
/// The calls resume each continuation exactly once by construction — whoever takes it out of the
/// call's state resumes it — and the checked kind verifies that under test.
#if DEBUG
    typealias CallContinuation<T> = CheckedContinuation<T, any Error>
#else
    typealias CallContinuation<T> = UnsafeContinuation<T, any Error>
#endif

/// `withCheckedThrowingContinuation` or `withUnsafeThrowingContinuation`, as `CallContinuation` is.
@inline(__always)
func withCallContinuation<T>(
    isolation: isolated (any Actor)? = #isolation, _ body: (CallContinuation<T>) -> Void
) async throws -> sending T {
    #if DEBUG
        try await withCheckedThrowingContinuation(isolation: isolation, body)
    #else
        try await withUnsafeThrowingContinuation(isolation: isolation, body)
    #endif
}
