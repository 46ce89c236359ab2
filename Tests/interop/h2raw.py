"""A raw HTTP/2 client (Python h2) for sending what a well-behaved gRPC library never would."""
import socket
import time

import h2.config
import h2.connection
import h2.events


def grpc_frame(body, compressed=False):
    return bytes([1 if compressed else 0]) + len(body).to_bytes(4, "big") + body


def varint(n):
    """A protobuf varint, for bodies written by hand."""
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def request_headers(path, port, extra=(), content_type="application/grpc"):
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1:%d" % port),
            ("content-type", content_type), ("te", "trailers"), *extra]


class RawConnection:
    def __init__(self, port, settings=None, auto_ack=True):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.auto_ack = auto_ack
        self.flush()
        self.events = []

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, timeout=0.2):
        """Reads whatever arrives within `timeout`; returns False if the peer closed."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return True
        except ConnectionResetError:
            return False
        if not data:
            return False
        for ev in self.conn.receive_data(data):
            self.events.append(ev)
            if self.auto_ack and isinstance(ev, h2.events.DataReceived):
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        self.flush()
        return True

    def call(self, path, body=None, extra_headers=(), content_type="application/grpc", end_with_headers=False, timeout=10):
        """Sends one request and waits for its end. Returns (headers, data, trailers, reset_code)."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, request_headers(path, self.port, extra_headers, content_type), end_stream=end_with_headers)
        if not end_with_headers:
            body = body if body is not None else b""
            # In frames the peer accepts (16 KiB unless it said more).
            step = self.conn.max_outbound_frame_size
            chunks = [body[i:i + step] for i in range(0, len(body), step)] or [b""]
            for i, chunk in enumerate(chunks):
                self.conn.send_data(sid, chunk, end_stream=i == len(chunks) - 1)
        self.flush()
        return self.wait(sid, timeout)

    def wait(self, sid, timeout=10):
        headers, trailers, data, reset = None, None, b"", None
        deadline = time.time() + timeout
        seen = 0
        while time.time() < deadline:
            for ev in self.events[seen:]:
                if getattr(ev, "stream_id", None) != sid:
                    continue
                if isinstance(ev, h2.events.ResponseReceived):
                    headers = dict(ev.headers)
                elif isinstance(ev, h2.events.TrailersReceived):
                    trailers = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                elif isinstance(ev, h2.events.StreamReset):
                    reset = ev.error_code
                elif isinstance(ev, h2.events.StreamEnded):
                    return headers, data, trailers, reset
            seen = len(self.events)
            if reset is not None:
                return headers, data, trailers, reset
            if not self.pump():
                break
        return headers, data, trailers, reset

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def status_of(headers, trailers):
    """grpc-status from the trailers, or from a Trailers-Only response's headers."""
    block = trailers or headers or {}
    return int(block["grpc-status"]) if "grpc-status" in block else None
