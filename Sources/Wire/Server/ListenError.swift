import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// Why a socket could not be made to listen, in words the person starting the service can act on
/// (NIO's own is `bind(descriptor:ptr:bytes:): Address already in use) (errno: 98)`).
public struct ListenError: Error, CustomStringConvertible {
    /// host:port as configured.
    public let address: String
    public let reason: String

    public var description: String { "cannot listen on \(address): \(reason)" }

    /// Translates what `bind` threw; `option` names the setting that chose the port (`--port`).
    public static func describing(_ error: any Error, host: String, port: Int, option: String) -> ListenError {
        let address = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        switch error {
        case let io as IOError where io.errnoCode == EADDRINUSE:
            return ListenError(
                address: address,
                reason: "the port is already in use (another program, or another copy of this service, listens there); "
                    + "stop it or choose another port with \(option)")
        case let io as IOError where io.errnoCode == EACCES:
            return ListenError(
                address: address,
                reason: "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE); choose a port from 1024 up with \(option)")
        case let io as IOError where io.errnoCode == EADDRNOTAVAIL:
            return ListenError(
                address: address,
                reason:
                    "\(host) is not an address of this machine; use 127.0.0.1 for this machine only or 0.0.0.0 for every interface (--host)"
            )
        case is SocketAddressError, is SocketAddressError.UnknownHost:
            return ListenError(address: address, reason: "\(host) cannot be resolved to an address of this machine (--host)")
        default:
            return ListenError(address: address, reason: "\(error)")
        }
    }
}
