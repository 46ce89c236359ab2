import Store
import Wire

/// Storage failures reach every service's callers the same way, converted here once: UNAVAILABLE
/// (the write was rolled back, so a retry is safe), with the SQLite error kept as the cause for the
/// call's log line and never sent. A damaged file is UNAVAILABLE too (the service is not serving:
/// health says NOT_SERVING, and a balancer sends the caller elsewhere), with a message that says so.
extension StoreError: RPCErrorConvertible {
    public var rpcError: RPCError {
        if isCorruption {
            return RPCError(
                .unavailable, "the service's database file is damaged and the service is not serving until it is restored; retry later",
                cause: self)
        }
        return RPCError(
            .unavailable, "the service's database is unavailable right now and nothing of this call was stored; retry", cause: self)
    }
}
