import NIOCore
import NIOPosix

/// A client socket that connected to itself. A peer on this host whose port lies in the ephemeral
/// range and is not listening yet (a service started before the one it calls, an SMTP relay being
/// restarted) can be "reached" by TCP's simultaneous open: the kernel picks that very port as the
/// source port and the socket connects to itself, holding the port the peer is about to bind.
public enum SelfConnection {
    /// Fails, closing it, a connection that reached its own socket: treated as refused, as Go's net
    /// package does, so the peer can bind and the next attempt reaches it. Closed by a reset, not
    /// the orderly close: that would leave the port in TIME_WAIT for a minute, which a server's
    /// bind (even with SO_REUSEADDR) cannot take over.
    public static func refuse(_ channel: any Channel) -> EventLoopFuture<Void> {
        if let local = channel.localAddress, let remote = channel.remoteAddress, local == remote {
            let refused = SelfConnectError(address: "\(remote)")
            let reset =
                (channel as? any SocketOptionProvider)?.setSoLinger(linger(l_onoff: 1, l_linger: 0))
                ?? channel.eventLoop.makeSucceededVoidFuture()
            return reset.flatMap { channel.close() }.flatMapThrowing { throw refused }
        }
        return channel.eventLoop.makeSucceededVoidFuture()
    }
}

/// What `SelfConnection.refuse` fails with: nothing listens at the address yet.
public struct SelfConnectError: Error, CustomStringConvertible {
    public let address: String
    public var description: String { "connection refused: nothing listens at \(address) (the socket connected to itself)" }
}
