import NIOCore

/// A gRPC service a `WireServer` hosts. Generated `*_Service` protocols provide `methods`; a service
/// implementation is a plain Swift type conforming to one.
public protocol WireService: Sendable {
    /// The fully qualified service name as in the proto (`leadwire.intake.v1.Intake`); health and
    /// reflection report it.
    static var serviceName: String { get }
    /// Every method the service serves, each with its `/package.Service/Method` path.
    var methods: [ServerMethod] { get }
}

/// One method of a service, type-erased to raw messages. Made by the generated code.
///
/// A class: each call and its connection hold the method they serve, and a class is held with one
/// reference count where the struct's path string and handler closure took two, each copy and
/// destruction through an outlined copy of the optional (~150 instructions a call).
public final class ServerMethod: Sendable {
    /// How many messages flow each way (gRPC's four call shapes).
    public enum Kind: Sendable { case unary, serverStreaming, clientStreaming, bidirectionalStreaming }

    /// `/package.Service/Method`, as the `:path` header carries it.
    public let path: String
    public let kind: Kind
    let handler: @Sendable (ServerCall) async throws -> Void

    init(path: String, kind: Kind, handler: @escaping @Sendable (ServerCall) async throws -> Void) {
        self.path = path
        self.kind = kind
        self.handler = handler
    }

    /// Unary and server-streaming methods take exactly one request message.
    var takesSingleRequest: Bool { kind == .unary || kind == .serverStreaming }

    /// A method taking one request and answering one response.
    ///
    /// - Parameters:
    ///   - path: `/package.Service/Method`.
    ///   - body: The handler. What it throws ends the call: an `RPCError` (or a type conforming to
    ///     `RPCErrorConvertible`) as itself, anything else as UNKNOWN without detail. It runs with
    ///     the call's deadline and is cancelled when the client cancels. It runs on the connection's
    ///     event loop, before and after its suspensions: work of more than a millisecond of CPU
    ///     goes to a thread of its own.
    public static func unary<Req: WireMessage, Resp: WireMessage>(
        _ path: String, _ body: @escaping @Sendable (Req, ServerContext) async throws -> Resp
    ) -> ServerMethod {
        ServerMethod(path: path, kind: .unary) { call in
            let request = try await call.receive(Req.self)!
            let response = try await body(request, call.context)
            try await call.send(response)
        }
    }

    /// A method taking one request and answering one response it already holds serialized (a
    /// stored record, say): the bytes go out as they are.
    public static func unary<Req: WireMessage, Resp: WireMessage>(
        _ path: String, _ body: @escaping @Sendable (Req, ServerContext) async throws -> EncodedMessage<Resp>
    ) -> ServerMethod {
        ServerMethod(path: path, kind: .unary) { call in
            let request = try await call.receive(Req.self)!
            let response = try await body(request, call.context)
            try await call.send(response)
        }
    }

    /// A method taking one request and answering with any number of messages, written through the
    /// `ResponseWriter`; the call ends OK when `body` returns, with its error when it throws.
    public static func serverStreaming<Req: WireMessage, Resp: WireMessage>(
        _ path: String, _ body: @escaping @Sendable (Req, ResponseWriter<Resp>, ServerContext) async throws -> Void
    ) -> ServerMethod {
        ServerMethod(path: path, kind: .serverStreaming) { call in
            let request = try await call.receive(Req.self)!
            try await body(request, ResponseWriter(call: call), call.context)
        }
    }

    /// A method reading any number of requests (the `RequestStream` ends when the client closes its
    /// side) and answering one response.
    public static func clientStreaming<Req: WireMessage, Resp: WireMessage>(
        _ path: String, _ body: @escaping @Sendable (RequestStream<Req>, ServerContext) async throws -> Resp
    ) -> ServerMethod {
        ServerMethod(path: path, kind: .clientStreaming) { call in
            let response = try await body(RequestStream(call: call), call.context)
            try await call.send(response)
        }
    }

    /// A method reading and writing messages independently; the call ends when `body` returns or throws.
    public static func bidirectionalStreaming<Req: WireMessage, Resp: WireMessage>(
        _ path: String, _ body: @escaping @Sendable (RequestStream<Req>, ResponseWriter<Resp>, ServerContext) async throws -> Void
    ) -> ServerMethod {
        ServerMethod(path: path, kind: .bidirectionalStreaming) { call in
            try await body(RequestStream(call: call), ResponseWriter(call: call), call.context)
        }
    }
}

/// What a handler knows about its call, and what it may set on the response. A view onto the call:
/// copies share it, and setters work on a `let`.
public struct ServerContext: Sendable {
    let call: ServerCall

    /// The method path, `/package.Service/Method`.
    public var method: String { call.path ?? "" }
    public var requestMetadata: Metadata { call.metadata }
    /// When the caller stops waiting (`grpc-timeout`), if it said.
    public var deadline: NIODeadline? { call.deadline }
    public var peer: String { call.connection.peer }

    // The handler writes these before it sends; the event loop reads them after the send has hopped
    // there, so the hop orders the accesses.

    /// Initial metadata, sent with the response headers (before the first message).
    public var responseMetadata: Metadata {
        get { call.responseMetadata }
        nonmutating set { call.responseMetadata = newValue }
    }
    /// Trailing metadata, sent with the status.
    public var trailingMetadata: Metadata {
        get { call.trailingMetadata }
        nonmutating set { call.trailingMetadata = newValue }
    }
    /// Compress response messages with gzip, when the caller accepts it.
    public var compressResponses: Bool {
        get { call.compressResponses }
        nonmutating set { call.compressResponses = newValue }
    }
    /// Whether the request's last message arrived compressed (for interop's compression checks).
    public var lastRequestWasCompressed: Bool { call.lastRequestWasCompressed }
    /// Who made the call, for the observer's record. An interceptor sets it before its first
    /// suspension (it then runs on the call's event loop).
    public var principal: String? {
        get { call.principal }
        nonmutating set { call.principal = newValue }
    }
}

/// Wraps every handler of a server: authentication, per-call context (task locals), auditing. Throw
/// an `RPCError` (or an `RPCErrorConvertible`) to refuse the call; the handler then never runs.
/// Health and reflection calls pass through it too: it decides by `context.method`.
public protocol ServerInterceptor: Sendable {
    func intercept(_ context: ServerContext, next: () async throws -> Void) async throws
}

/// Hears how every call ended, including calls refused before any handler ran (unknown method,
/// expired deadline, malformed request) and calls the client cancelled.
public protocol CallObserver: Sendable {
    /// Runs on the call's event loop, once per call: keep it cheap and non-blocking.
    func callFinished(_ call: FinishedCall)
}

public struct FinishedCall: Sendable {
    /// `/package.Service/Method` as requested.
    public var method: String
    public var code: StatusCode
    public var message: String
    /// From the request headers to the status.
    public var durationNanos: UInt64
    public var principal: String?
    public var peer: String
    /// The failure underneath the status (`RPCError.cause`), for the log; never sent.
    public var cause: (any Error)? = nil
}

/// The request messages of a client- or bidirectional-streaming call.
public struct RequestStream<Message: WireMessage>: AsyncSequence, Sendable {
    let call: ServerCall

    public struct AsyncIterator: AsyncIteratorProtocol {
        let call: ServerCall
        public mutating func next() async throws -> Message? {
            try await call.receive(Message.self)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(call: call) }
}

/// Sends the response messages of a streaming call. `write` suspends while the caller is not reading
/// (HTTP/2 flow control), so a handler never buffers without bound.
public struct ResponseWriter<Message: WireMessage>: Sendable {
    let call: ServerCall

    public func write(_ message: Message) async throws {
        try await call.send(message)
    }

    /// Sends the response headers now, before any message (e.g. so a watcher knows it is attached).
    public func sendHeaders() async throws {
        try await call.sendHeaders()
    }
}
