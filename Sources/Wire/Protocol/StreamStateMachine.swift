/// The life of one gRPC call on its HTTP/2 stream, as one end (client or server) sees it.
///
/// Pure: it holds no buffers and does no I/O. `ServerCall` and `ClientStream` feed it what happened
/// (events) and perform what it answers (actions): submit headers, resume or pause the body, hand
/// over the end of the stream, refuse an operation the state does not allow. Both halves of the
/// stream are modelled separately, as HTTP/2 does: ours (`outbound`, what we send) and the peer's
/// (`inbound`). A gRPC call's *status* is settled once, independently of how far the halves have got:
/// a server settles it when the handler finishes (or the call is refused), a client when the trailers
/// arrive or the call fails locally.
///
/// grpc-swift-nio-transport's `GRPCStreamStateMachine` is the model: one machine for both roles,
/// states as enums, every (state, event) pair tested without sockets (StreamStateMachineTests).
struct StreamStateMachine: Sendable {
    enum Role: Sendable { case client, server }

    /// Our half of the stream.
    enum Outbound: Hashable, Sendable, CaseIterable {
        /// Nothing sent yet (a server before its response headers).
        case idle
        /// Headers sent; body bytes flow as nghttp2 asks for them.
        case open
        /// Headers sent, and nghttp2 was told there is nothing to send now: it asks again only
        /// after `resumeBody`.
        case paused
        /// The end is decided and waits behind the body still buffered (a server's trailers, a
        /// client's END_STREAM).
        case ending
        /// The end has been handed to nghttp2.
        case ended
    }

    /// The peer's half of the stream.
    enum Inbound: Hashable, Sendable, CaseIterable {
        /// No headers received yet.
        case idle
        /// Headers received; messages may arrive.
        case open
        /// The peer ended its half (END_STREAM; for a client, the trailers).
        case ended
    }

    enum State: Hashable, Sendable {
        case active(inbound: Inbound, outbound: Outbound)
        /// The stream is gone (closed by nghttp2, normally or by a reset): nothing happens any more.
        case closed
    }

    /// What the caller of an event must do.
    enum Action: Hashable, Sendable {
        case none
        /// Submit our headers, with a body to follow.
        case submitHeaders
        /// Server: submit the status as a Trailers-Only response (one HEADERS frame, END_STREAM).
        case submitTrailersOnly
        /// Ask nghttp2 to call for body bytes again.
        case resumeBody
        /// Tell nghttp2 there is nothing to send now (return "deferred" from the data callback).
        case pauseBody
        /// Hand over the end now, after the bytes just given: a server's trailers, a client's
        /// END_STREAM.
        case submitEnd
        /// The operation is not possible in this state.
        case refuse(Refusal)
    }

    enum Refusal: Hashable, Sendable {
        /// The stream is gone (the peer reset it, or the connection closed).
        case streamClosed
        /// The call's status is settled: nothing more may be sent.
        case callEnded
        /// A client's request stream was already closed.
        case sendAfterEnd
    }

    let role: Role
    private(set) var state: State = .active(inbound: .idle, outbound: .idle)
    /// The call's status is settled; it is never unsettled.
    private(set) var settled = false

    init(role: Role) {
        self.role = role
    }

    /// A machine in any state, for tests that visit every (state, event) pair.
    init(role: Role, state: State, settled: Bool) {
        self.role = role
        self.state = state
        self.settled = settled || state == .closed
    }

    var inbound: Inbound? {
        if case .active(let i, _) = state { return i }
        return nil
    }

    var outbound: Outbound? {
        if case .active(_, let o) = state { return o }
        return nil
    }

    var isClosed: Bool { state == .closed }

    /// Whether the peer's headers have arrived (a server's request headers, a client's response headers).
    var receivedHeaders: Bool {
        guard case .active(let i, _) = state else { return true }
        return i != .idle
    }

    /// Whether our headers have gone out.
    var sentHeaders: Bool {
        guard case .active(_, let o) = state else { return true }
        return o != .idle
    }

    private mutating func set(_ inbound: Inbound, _ outbound: Outbound) {
        state = .active(inbound: inbound, outbound: outbound)
    }

    // MARK: What we send

    /// Our headers, or the first message (which needs them). A client's headers go with the
    /// stream's creation, so for a client this is the stream starting.
    mutating func send() -> Action {
        guard case .active(let i, let o) = state else { return .refuse(.streamClosed) }
        if settled && role == .server { return .refuse(.callEnded) }
        switch o {
        case .idle:
            set(i, .open)
            return .submitHeaders
        case .open:
            return .none
        case .paused:
            set(i, .open)
            return .resumeBody
        case .ending, .ended:
            return .refuse(role == .client ? .sendAfterEnd : .callEnded)
        }
    }

    /// Our end: a server's status (trailers), a client's END_STREAM. A server's status settles the
    /// call. Ending twice is no error: the second changes nothing.
    mutating func sendEnd() -> Action {
        guard case .active(let i, let o) = state else { return .none }
        if role == .server {
            if settled { return .none }
            settled = true
        }
        switch o {
        case .idle:
            if role == .server {
                set(i, .ended)
                return .submitTrailersOnly
            }
            // A client that never started has nothing to end.
            set(i, .ended)
            return .none
        case .open:
            set(i, .ending)
            return .none
        case .paused:
            set(i, .ending)
            return .resumeBody
        case .ending, .ended:
            return .none
        }
    }

    /// nghttp2 asks for body bytes; `moved` were given now and `remaining` stay buffered.
    mutating func bodyRequested(moved: Int, remaining: Int) -> Action {
        guard case .active(let i, let o) = state else { return .none }
        switch o {
        case .ending where remaining == 0:
            set(i, .ended)
            return .submitEnd
        case .open where moved == 0 && remaining == 0:
            set(i, .paused)
            return .pauseBody
        case .paused where moved == 0 && remaining == 0:
            return .pauseBody
        case .paused:
            set(i, .open)
            return .none
        default:
            return .none
        }
    }

    /// Bytes were added to our body buffer (a message, framed).
    mutating func bodyAdded() -> Action {
        guard case .active(let i, .paused) = state else { return .none }
        set(i, .open)
        return .resumeBody
    }

    // MARK: What we receive

    /// A complete header block from the peer. The first opens the peer's half (or, with END_STREAM,
    /// is its whole half: a client's request without a body, a server's Trailers-Only response); a
    /// later one is trailers and ends it. Returns whether the block ended the peer's half (for a
    /// client: it carries the status, and the client settles the call from it).
    @discardableResult
    mutating func receivedHeaders(endStream: Bool) -> Bool {
        guard case .active(let i, let o) = state else { return false }
        if i == .idle && !endStream {
            set(.open, o)
            return false
        }
        set(.ended, o)
        return true
    }

    /// The peer's END_STREAM on a DATA frame.
    mutating func receivedEnd() {
        guard case .active(let i, let o) = state, i != .ended else { return }
        set(.ended, o)
    }

    /// Whether a message that just arrived is for the call: not once the status is settled (a
    /// server has answered, a client has its status) or the stream is gone.
    var acceptsMessages: Bool {
        guard case .active(let i, _) = state else { return false }
        return !settled && i == .open
    }

    // MARK: Ending

    /// A client settles its call without trailers (deadline, cancellation, a bad response): the
    /// request half ends with what is buffered. Returns false when already settled.
    mutating func settle() -> (first: Bool, action: Action) {
        guard !settled else { return (false, .none) }
        settled = true
        guard role == .client, case .active(let i, let o) = state else { return (true, .none) }
        switch o {
        case .open:
            set(i, .ending)
            return (true, .none)
        case .paused:
            set(i, .ending)
            return (true, .resumeBody)
        case .idle, .ending, .ended:
            return (true, .none)
        }
    }

    /// The stream is gone. Returns whether the call had not been settled (a cancellation, for a server).
    @discardableResult
    mutating func streamClosed() -> Bool {
        let unsettled = !settled
        state = .closed
        settled = true
        return unsettled
    }
}
