import CNGHTTP2
import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What an nghttp2 session reports to the connection that owns it. Called synchronously from inside
/// `receive`/`drainOutput`, on the connection's event loop.
///
/// A base class the two connections (server and client) override, not a protocol: the session calls
/// its delegate ~17 times a call, and a class reference held `Unmanaged` can be lent to each call
/// without a retain and release, where a protocol existential loaded from the session's unowned
/// field was retained and released around every callback (~700 instructions a unary call).
class H2SessionDelegate: @unchecked Sendable {
    func h2BeginHeaders(stream: Int32) { mustOverride(#function) }
    /// Returns false to reject the header block (the stream is then reset).
    func h2Header(stream: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool { mustOverride(#function) }
    func h2HeadersComplete(stream: Int32, endStream: Bool) { mustOverride(#function) }
    func h2Data(stream: Int32, bytes: UnsafeRawBufferPointer) { mustOverride(#function) }
    func h2EndStream(stream: Int32) { mustOverride(#function) }
    func h2StreamClosed(stream: Int32, errorCode: UInt32) { mustOverride(#function) }
    /// Fills `buffer` with body bytes for `stream`. Returns the count, or nil for "nothing yet"
    /// (the stream is deferred until `resumeData`). Sets `eof` when the body is complete.
    func h2ReadBody(stream: Int32, into buffer: UnsafeMutableRawBufferPointer, eof: inout Bool, endStream: inout Bool) -> Int? {
        mustOverride(#function)
    }
    func h2FrameSent(type: UInt8, stream: Int32, flags: UInt8) { mustOverride(#function) }
    func h2PingReceived() { mustOverride(#function) }
    func h2GoAwayReceived(lastStreamID: Int32, errorCode: UInt32) { mustOverride(#function) }
    /// The peer's SETTINGS frame (not an ACK) arrived.
    func h2SettingsReceived() { mustOverride(#function) }
    /// nghttp2 gave up sending a frame it had queued (`error` is its error code).
    func h2FrameNotSent(type: UInt8, stream: Int32, error: Int32) { mustOverride(#function) }

    private func mustOverride(_ name: String) -> Never {
        preconditionFailure("\(type(of: self)) must override \(name)")
    }
}

/// One nghttp2 session in memory-buffer mode: nghttp2 never touches the socket; bytes go in through
/// `receive` and come out of `drainOutput` (the shape of swift-nio-ssl's BIO). Owns the C object and
/// frees it in `deinit`. Not thread-safe: used only on its connection's event loop.
final class H2Session {
    enum Role { case server, client }

    struct Settings {
        var maxConcurrentStreams: UInt32
        var initialWindowSize: UInt32
        var maxHeaderListSize: UInt32
        var connectionWindowSize: Int32
    }

    private(set) var raw: OpaquePointer!
    /// Unretained: the delegate owns the session.
    private let delegate: Unmanaged<H2SessionDelegate>

    init(role: Role, settings: Settings, delegate: H2SessionDelegate) {
        self.delegate = .passUnretained(delegate)
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        H2Session.install(callbacks)

        var option: OpaquePointer?
        nghttp2_option_new(&option)
        defer { nghttp2_option_del(option) }
        // We credit flow-control windows ourselves as the application takes bytes, so a slow reader
        // never makes us buffer without bound (PROTOCOL-NOTES pitfall 4).
        nghttp2_option_set_no_auto_window_update(option, 1)
        // Rapid-reset mitigation (CVE-2023-44487): at most 1000 RST_STREAMs in a burst, 33/s after.
        nghttp2_option_set_stream_reset_rate_limit(option, 1000, 33)
        nghttp2_option_set_max_continuations(option, 8)
        nghttp2_option_set_max_outbound_ack(option, 1000)
        nghttp2_option_set_max_settings(option, 32)
        if role == .client {
            // Until the server's SETTINGS arrive, assume the common default rather than unlimited.
            nghttp2_option_set_peer_max_concurrent_streams(option, 100)
        }

        var session: OpaquePointer?
        let user = Unmanaged.passUnretained(self).toOpaque()
        let rc: Int32
        switch role {
        case .server: rc = nghttp2_session_server_new2(&session, callbacks, user, option)
        case .client: rc = nghttp2_session_client_new2(&session, callbacks, user, option)
        }
        precondition(rc == 0 && session != nil, "nghttp2 session creation failed: \(rc)")
        raw = session

        // A session sends no SETTINGS by itself (PROTOCOL-NOTES pitfall 1).
        var iv = [
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: settings.maxConcurrentStreams),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: settings.initialWindowSize),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: settings.maxHeaderListSize),
        ]
        switch role {
        case .client:
            iv.append(nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0))
        case .server:
            // RFC 7540's stream priorities (deprecated by RFC 9113; gRPC clients do not use them) are
            // declined (RFC 9218): nghttp2 then keeps no dependency tree and no closed streams for
            // it, so a client's PRIORITY frames are read and dropped instead of making the server
            // rebuild a tree (CVE-2019-9513), and a call costs ~170 instructions less.
            iv.append(nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES.rawValue), value: 1))
        }
        nghttp2_submit_settings(raw, UInt8(NGHTTP2_FLAG_NONE.rawValue), &iv, iv.count)
        if settings.connectionWindowSize > 65535 {
            nghttp2_session_set_local_window_size(raw, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, settings.connectionWindowSize)
        }
    }

    deinit {
        nghttp2_session_del(raw)
    }

    /// Feeds received bytes. Returns a negative nghttp2 error code when the peer broke the protocol
    /// (the connection must then be closed after flushing whatever GOAWAY nghttp2 queued).
    func receive(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        return nghttp2_session_mem_recv(raw, base.assumingMemoryBound(to: UInt8.self), bytes.count)
    }

    /// Moves pending frames into `out`, stopping after `limit` bytes. Returns false on a fatal error.
    func drainOutput(into out: inout ByteBuffer, limit: Int) -> Bool {
        while out.readableBytes < limit {
            var ptr: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(raw, &ptr)
            if n < 0 { return false }
            if n == 0 { break }
            // The pointer is valid only until the next call into the session (pitfall 2).
            out.writeBytes(UnsafeRawBufferPointer(start: ptr, count: n))
        }
        return true
    }

    /// Writes pending frames to the channel while it is writable, then flushes. Pausing while it is
    /// not writable keeps NIO's outbound buffer bounded for a peer that stops reading (PROTOCOL-NOTES);
    /// `channelWritabilityChanged` calls this again. Returns false on a fatal session error.
    func writeOutput(to context: ChannelHandlerContext) -> Bool {
        var wrote = false
        defer { if wrote { context.flush() } }
        while context.channel.isWritable {
            var out = context.channel.allocator.buffer(capacity: 16 * 1024)
            guard drainOutput(into: &out, limit: 64 * 1024) else { return false }
            if out.readableBytes == 0 { break }
            context.write(NIOAny(out), promise: nil)
            wrote = true
        }
        return true
    }

    var wantsRead: Bool { nghttp2_session_want_read(raw) != 0 }
    var wantsWrite: Bool { nghttp2_session_want_write(raw) != 0 }
    var lastProcessedStreamID: Int32 { nghttp2_session_get_last_proc_stream_id(raw) }

    /// Credits `count` bytes back to the peer's windows for `stream` and the connection.
    func consume(stream: Int32, _ count: Int) {
        guard count > 0 else { return }
        // Credits the connection window even when the stream is already gone.
        nghttp2_session_consume(raw, stream, count)
    }

    func consumeConnection(_ count: Int) {
        guard count > 0 else { return }
        nghttp2_session_consume_connection(raw, count)
    }

    /// The object registered for `stream` (unretained: its owner keeps it alive while the stream is).
    @inline(__always)
    func streamUserData(_ stream: Int32) -> UnsafeMutableRawPointer? {
        nghttp2_session_get_stream_user_data(raw, stream)
    }

    func setStreamUserData(_ stream: Int32, _ data: UnsafeMutableRawPointer?) {
        nghttp2_session_set_stream_user_data(raw, stream, data)
    }

    func resumeData(stream: Int32) {
        nghttp2_session_resume_data(raw, stream)
    }

    func resetStream(_ stream: Int32, errorCode: UInt32) {
        nghttp2_submit_rst_stream(raw, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, errorCode)
    }

    func submitResponse(stream: Int32, headers: HeaderBlock, withBody: Bool) -> Int32 {
        headers.withNV { nv, count in
            if withBody {
                var provider = H2Session.dataProvider
                return nghttp2_submit_response(raw, stream, nv, count, &provider)
            }
            return nghttp2_submit_response(raw, stream, nv, count, nil)
        }
    }

    func submitTrailers(stream: Int32, headers: HeaderBlock) -> Int32 {
        headers.withNV { nv, count in nghttp2_submit_trailer(raw, stream, nv, count) }
    }

    func submitResponse(stream: Int32, headers: FrozenHeaders, withBody: Bool) -> Int32 {
        if withBody {
            var provider = H2Session.dataProvider
            return nghttp2_submit_response(raw, stream, headers.nv, headers.count, &provider)
        }
        return nghttp2_submit_response(raw, stream, headers.nv, headers.count, nil)
    }

    func submitTrailers(stream: Int32, headers: FrozenHeaders) -> Int32 {
        nghttp2_submit_trailer(raw, stream, headers.nv, headers.count)
    }

    /// Returns the new stream id, or a negative error code.
    func submitRequest(headers: HeaderBlock) -> Int32 {
        headers.withNV { nv, count in
            var provider = H2Session.dataProvider
            return nghttp2_submit_request(raw, nil, nv, count, &provider, nil)
        }
    }

    func submitShutdownNotice() {
        nghttp2_submit_shutdown_notice(raw)
    }

    func submitGoAway(errorCode: UInt32, lastStreamID: Int32? = nil, debug: String = "") {
        var d = Array(debug.utf8)
        nghttp2_submit_goaway(raw, UInt8(NGHTTP2_FLAG_NONE.rawValue), lastStreamID ?? lastProcessedStreamID, errorCode, &d, d.count)
    }

    /// The peer's SETTINGS_MAX_HEADER_LIST_SIZE, nil when it sent none (nghttp2 then reports UINT32_MAX).
    var peerMaxHeaderListSize: Int? {
        let v = nghttp2_session_get_remote_settings(raw, NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE)
        return v == UInt32.max ? nil : Int(v)
    }

    func isStreamOpenRemotely(_ stream: Int32) -> Bool {
        nghttp2_session_get_stream_remote_close(raw, stream) == 0
    }

    // MARK: C callbacks. None captures context: each finds its session through user_data.

    /// The session's delegate, lent to `body` without a retain and release around every callback
    /// (the connection owns the session and outlives every call into it; ~17 callbacks a call).
    @inline(__always)
    private static func delegate<R>(_ user: UnsafeMutableRawPointer?, _ body: (H2SessionDelegate) -> R) -> R {
        Unmanaged<H2Session>.fromOpaque(user!)._withUnsafeGuaranteedRef { $0.delegate._withUnsafeGuaranteedRef(body) }
    }

    private static let dataProvider: nghttp2_data_provider = {
        var p = nghttp2_data_provider()
        p.read_callback = { _, stream, buf, length, flags, _, user in
            var eof = false
            var endStream = true
            let n = H2Session.delegate(user) {
                $0.h2ReadBody(
                    stream: stream, into: UnsafeMutableRawBufferPointer(start: buf, count: length), eof: &eof, endStream: &endStream)
            }
            guard let n else { return Int(NGHTTP2_ERR_DEFERRED.rawValue) }
            if eof {
                var f = NGHTTP2_DATA_FLAG_EOF.rawValue
                if !endStream { f |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue }
                flags!.pointee |= f
            }
            return n
        }
        return p
    }()

    private static func install(_ cbs: OpaquePointer?) {
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs) { _, frame, user in
            H2Session.delegate(user) { $0.h2BeginHeaders(stream: frame!.pointee.hd.stream_id) }
            return 0
        }
        nghttp2_session_callbacks_set_on_header_callback(cbs) { _, frame, name, namelen, value, valuelen, _, user in
            let ok = H2Session.delegate(user) {
                $0.h2Header(
                    stream: frame!.pointee.hd.stream_id,
                    name: UnsafeRawBufferPointer(start: name, count: namelen),
                    value: UnsafeRawBufferPointer(start: value, count: valuelen))
            }
            return ok ? 0 : Int32(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs) { _, frame, user in
            let hd = frame!.pointee.hd
            let endStream = hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
            H2Session.delegate(user) { d in
                switch UInt32(hd.type) {
                case NGHTTP2_HEADERS.rawValue:
                    d.h2HeadersComplete(stream: hd.stream_id, endStream: endStream)
                case NGHTTP2_DATA.rawValue:
                    if endStream { d.h2EndStream(stream: hd.stream_id) }
                case NGHTTP2_PING.rawValue:
                    if hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0 { d.h2PingReceived() }
                case NGHTTP2_SETTINGS.rawValue:
                    if hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0 { d.h2SettingsReceived() }
                case NGHTTP2_GOAWAY.rawValue:
                    let g = frame!.pointee.goaway
                    d.h2GoAwayReceived(lastStreamID: g.last_stream_id, errorCode: g.error_code)
                default:
                    break
                }
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs) { _, _, stream, data, len, user in
            H2Session.delegate(user) { $0.h2Data(stream: stream, bytes: UnsafeRawBufferPointer(start: data, count: len)) }
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs) { _, stream, code, user in
            H2Session.delegate(user) { $0.h2StreamClosed(stream: stream, errorCode: code) }
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs) { _, frame, error, user in
            let hd = frame!.pointee.hd
            H2Session.delegate(user) { $0.h2FrameNotSent(type: hd.type, stream: hd.stream_id, error: error) }
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_send_callback(cbs) { _, frame, user in
            let hd = frame!.pointee.hd
            H2Session.delegate(user) { $0.h2FrameSent(type: hd.type, stream: hd.stream_id, flags: hd.flags) }
            return 0
        }
    }
}

/// A header list laid out once in one byte array, handed to nghttp2 as `nghttp2_nv`s (nghttp2 copies
/// them during submit, so the storage need only outlive the call).
struct HeaderBlock {
    private var bytes: [UInt8] = []
    private var spans: [(Int, Int, Int, Int)] = []

    init() {
        bytes.reserveCapacity(256)
        spans.reserveCapacity(8)
    }

    mutating func add(_ name: String, _ value: String) {
        let ns = bytes.count
        bytes.append(contentsOf: name.utf8)
        let vs = bytes.count
        bytes.append(contentsOf: value.utf8)
        spans.append((ns, vs - ns, vs, bytes.count - vs))
    }

    /// Appends custom metadata: `-bin` values base64 (unpadded), others as they are.
    mutating func add(_ metadata: Metadata) {
        for (k, v) in metadata {
            switch v {
            case .string(let s): add(k, s)
            case .binary(let b): add(k.hasSuffix("-bin") ? k : k + "-bin", Base64.encode(b))
            }
        }
    }

    var isEmpty: Bool { spans.isEmpty }

    /// Size as SETTINGS_MAX_HEADER_LIST_SIZE counts it: name + value + 32 per field (RFC 9113 6.5.2).
    var listSize: Int { spans.reduce(0) { $0 + $1.1 + $1.3 + 32 } }

    func withNV<R>(_ body: (UnsafePointer<nghttp2_nv>, Int) -> R) -> R {
        bytes.withUnsafeBufferPointer { buf in
            let base = UnsafeMutablePointer(mutating: buf.baseAddress ?? UnsafePointer(bitPattern: 1)!)
            return withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: max(spans.count, 1)) { nv in
                for (i, (ns, nl, vs, vl)) in spans.enumerated() {
                    nv[i] = nghttp2_nv(
                        name: base + ns, value: base + vs, namelen: nl, valuelen: vl, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
                }
                return body(nv.baseAddress!, spans.count)
            }
        }
    }
}

/// A header list fixed for the life of the process (the common response headers and the OK
/// trailer), handed to nghttp2 without copying names or values.
final class FrozenHeaders: @unchecked Sendable {
    let nv: UnsafeMutablePointer<nghttp2_nv>
    let count: Int

    init(_ pairs: [(String, String)]) {
        count = pairs.count
        nv = .allocate(capacity: pairs.count)
        for (i, (name, value)) in pairs.enumerated() {
            let n = Array(name.utf8)
            let v = Array(value.utf8)
            let storage = UnsafeMutablePointer<UInt8>.allocate(capacity: n.count + v.count)
            storage.initialize(from: n + v, count: n.count + v.count)
            nv[i] = nghttp2_nv(
                name: storage, value: storage + n.count, namelen: n.count, valuelen: v.count,
                flags: UInt8(NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue | NGHTTP2_NV_FLAG_NO_COPY_VALUE.rawValue))
        }
        // Never freed: instances are process-lifetime statics.
    }
}

extension ByteBuffer {
    /// Moves up to `buffer.count` readable bytes into `buffer` (a data source callback's buffer).
    mutating func move(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let n = Swift.min(buffer.count, readableBytes)
        guard n > 0 else { return 0 }
        readWithUnsafeReadableBytes { src in
            buffer.baseAddress!.copyMemory(from: src.baseAddress!, byteCount: n)
            return n
        }
        if readableBytes == 0 { clear() }
        return n
    }
}

extension UnsafeRawBufferPointer {
    /// Byte equality with a literal, without the generic sequence machinery (hot: every header).
    @inline(__always)
    func equals(_ s: StaticString) -> Bool {
        count == s.utf8CodeUnitCount && (count == 0 || memcmp(baseAddress!, s.utf8Start, count) == 0)
    }
}
