import NIOConcurrencyHelpers
import NIOSSL

/// TLS for Wire's server and client (swift-nio-ssl, BoringSSL underneath): TLS 1.2 or newer,
/// swift-nio-ssl's modern cipher list, ALPN `h2` as gRPC requires. Files are PEM.
public enum WireTLS {
    /// A server's certificate and key, and optionally the CA its clients' certificates must chain
    /// to (mutual TLS: a client without such a certificate fails the handshake).
    public struct Server: Sendable, Hashable {
        public var certificatePath: String
        public var keyPath: String
        public var clientCAPath: String?

        public init(certificatePath: String, keyPath: String, clientCAPath: String? = nil) {
            self.certificatePath = certificatePath
            self.keyPath = keyPath
            self.clientCAPath = clientCAPath
        }

        /// Reads the files: a wrong path or a bad file is reported with the file's name.
        func makeContext() throws -> NIOSSLContext {
            let chain: [NIOSSLCertificate]
            do {
                chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
            } catch {
                throw TLSFileError("cannot read the TLS certificate \(certificatePath): \(error) (expected PEM)")
            }
            guard !chain.isEmpty else { throw TLSFileError("the TLS certificate file \(certificatePath) holds no certificate") }
            let key: NIOSSLPrivateKey
            do {
                key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
            } catch {
                throw TLSFileError("cannot read the TLS key \(keyPath): \(error) (expected an unencrypted PEM key)")
            }
            var c = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
            c.minimumTLSVersion = .tlsv12
            c.applicationProtocols = ["h2"]
            if let ca = clientCAPath {
                let roots: [NIOSSLCertificate]
                do {
                    roots = try NIOSSLCertificate.fromPEMFile(ca)
                } catch {
                    throw TLSFileError("cannot read the client CA \(ca): \(error) (expected PEM)")
                }
                c.trustRoots = .certificates(roots)
                c.certificateVerification = .noHostnameVerification
                c.sendCANameList = true
            }
            do {
                return try NIOSSLContext(configuration: c)
            } catch {
                throw TLSFileError("the TLS certificate \(certificatePath) and key \(keyPath) cannot be used together: \(error)")
            }
        }
    }

    /// What a client trusts and presents.
    public struct Client: Sendable, Hashable {
        /// PEM file of the CA(s) the server's certificate must chain to; nil = the system's roots.
        public var caPath: String?
        /// A client certificate and key, for servers that require mutual TLS.
        public var certificatePath: String?
        public var keyPath: String?
        /// The name checked against the server's certificate (and sent as SNI); nil = the host dialled.
        public var serverName: String?

        public init(caPath: String? = nil, certificatePath: String? = nil, keyPath: String? = nil, serverName: String? = nil) {
            self.caPath = caPath
            self.certificatePath = certificatePath
            self.keyPath = keyPath
            self.serverName = serverName
        }

        func makeContext() throws -> NIOSSLContext {
            var c = TLSConfiguration.makeClientConfiguration()
            c.minimumTLSVersion = .tlsv12
            c.applicationProtocols = ["h2"]
            if let ca = caPath {
                do {
                    c.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
                } catch {
                    throw TLSFileError("cannot read the CA file \(ca): \(error) (expected PEM)")
                }
            }
            if let cert = certificatePath, let key = keyPath {
                do {
                    c.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
                    c.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
                } catch {
                    throw TLSFileError("cannot read the client certificate \(cert) or key \(key): \(error)")
                }
            }
            return try NIOSSLContext(configuration: c)
        }
    }

    public struct TLSFileError: Error, CustomStringConvertible {
        public var description: String
        init(_ d: String) { description = d }
    }
}

/// The server's current TLS context: replaced whole on reload, so connections already open keep the
/// context they were accepted with and new ones take the new one.
final class TLSContextBox: Sendable {
    let source: WireTLS.Server
    private let current: NIOLockedValueBox<NIOSSLContext>

    init(_ source: WireTLS.Server) throws {
        self.source = source
        current = NIOLockedValueBox(try source.makeContext())
    }

    var context: NIOSSLContext { current.withLockedValue { $0 } }

    func reload() throws {
        let fresh = try source.makeContext()
        current.withLockedValue { $0 = fresh }
    }
}
