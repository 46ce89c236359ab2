import CWireZlib
import NIOCore

/// gzip message compression (`grpc-encoding: gzip`), the one codec every stock gRPC library offers.
enum Gzip {
    enum Failure: Error {
        case corrupt
        case tooLarge(limit: Int)
    }

    static func compress(_ input: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var stream = z_stream()
        // windowBits 31 = 15 + 16: a gzip wrapper rather than zlib's (RFC 1952, as gRPC specifies).
        let rc = deflateInit2_(&stream, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        precondition(rc == Z_OK, "deflateInit2 failed: \(rc)")
        defer { deflateEnd(&stream) }
        let bound = Int(deflateBound(&stream, UInt(input.readableBytes))) + 32
        var out = allocator.buffer(capacity: bound)
        input.withUnsafeReadableBytes { inPtr in
            stream.next_in = UnsafeMutablePointer(mutating: inPtr.bindMemory(to: UInt8.self).baseAddress)
            stream.avail_in = UInt32(inPtr.count)
            out.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { outPtr in
                stream.next_out = outPtr.bindMemory(to: UInt8.self).baseAddress
                stream.avail_out = UInt32(outPtr.count)
                let r = deflate(&stream, Z_FINISH)
                precondition(r == Z_STREAM_END, "deflate with a deflateBound buffer must finish: \(r)")
                return outPtr.count - Int(stream.avail_out)
            }
        }
        return out
    }

    /// Inflates at most `limit` bytes: a small compressed message must not expand without bound.
    static func decompress(_ input: ByteBuffer, limit: Int, allocator: ByteBufferAllocator) throws(Failure) -> ByteBuffer {
        var stream = z_stream()
        guard inflateInit2_(&stream, 31, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else { throw .corrupt }
        defer { inflateEnd(&stream) }
        var out = allocator.buffer(capacity: min(max(input.readableBytes * 4, 256), limit + 1))
        var result: Int32 = Z_OK
        input.withUnsafeReadableBytes { inPtr in
            stream.next_in = UnsafeMutablePointer(mutating: inPtr.bindMemory(to: UInt8.self).baseAddress)
            stream.avail_in = UInt32(inPtr.count)
            while result == Z_OK {
                if out.readableBytes > limit { break }
                let chunk = min(max(out.capacity - out.writerIndex, 4096), limit + 1 - out.readableBytes + 1)
                out.writeWithUnsafeMutableBytes(minimumWritableBytes: chunk) { outPtr in
                    stream.next_out = outPtr.bindMemory(to: UInt8.self).baseAddress
                    stream.avail_out = UInt32(min(outPtr.count, chunk))
                    let before = stream.avail_out
                    result = inflate(&stream, Z_NO_FLUSH)
                    if result == Z_BUF_ERROR && before == stream.avail_out && stream.avail_in == 0 {
                        result = Z_DATA_ERROR
                    } else if result == Z_BUF_ERROR {
                        result = Z_OK
                    }
                    return Int(before - stream.avail_out)
                }
            }
        }
        if out.readableBytes > limit { throw .tooLarge(limit: limit) }
        guard result == Z_STREAM_END else { throw .corrupt }
        return out
    }
}
