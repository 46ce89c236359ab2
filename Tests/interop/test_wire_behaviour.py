"""Wire's behaviour toward stock clients and hostile ones: precise statuses for bad input, limits,
flow control, concurrency, health and reflection, graceful shutdown. Each test leaves the server up
(the module fixture asserts it is still alive at the end)."""
import concurrent.futures
import signal
import socket
import subprocess
import threading
import time

import grpc
import h2.events
import h2.settings
import pytest

from conftest import ServerProcess
from h2raw import RawConnection, grpc_frame, status_of, varint
from wire_interop import empty_pb2, messages_pb2, test_pb2_grpc

UNARY = "/grpc.testing.TestService/UnaryCall"


def identity(b):
    return b


def test_unknown_method_is_unimplemented(channel):
    call = channel.unary_unary("/grpc.testing.TestService/NoSuchMethod", request_serializer=identity, response_deserializer=identity)
    with pytest.raises(grpc.RpcError) as e:
        call(b"")
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "NoSuchMethod" in e.value.details()


def test_unknown_service_is_unimplemented_and_named(channel):
    call = channel.unary_unary("/no.such.Service/Method", request_serializer=identity, response_deserializer=identity)
    with pytest.raises(grpc.RpcError) as e:
        call(b"")
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "no.such.Service" in e.value.details()


def test_malformed_message_is_internal(channel):
    call = channel.unary_unary(UNARY, request_serializer=identity, response_deserializer=identity)
    with pytest.raises(grpc.RpcError) as e:
        call(b"\xff\xff\xff\xff\xff")
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "grpc.testing.SimpleRequest" in e.value.details()


def test_five_mib_message_is_resource_exhausted(stub):
    with pytest.raises(grpc.RpcError) as e:
        stub.UnaryCall(messages_pb2.SimpleRequest(payload=messages_pb2.Payload(body=b"\x01" * (5 * 1024 * 1024))))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit" in e.value.details()
    # The connection and server survive.
    assert stub.EmptyCall(empty_pb2.Empty()) == empty_pb2.Empty()


def test_zero_timeout_is_deadline_exceeded(interop_server):
    c = RawConnection(interop_server.port)
    headers, _, trailers, _ = c.call(UNARY, grpc_frame(b""), extra_headers=[("grpc-timeout", "0n")])
    assert status_of(headers, trailers) == 4
    c.close()


def test_malformed_timeout_is_refused(interop_server):
    c = RawConnection(interop_server.port)
    headers, _, trailers, _ = c.call(UNARY, grpc_frame(b""), extra_headers=[("grpc-timeout", "12x")])
    assert status_of(headers, trailers) == 13
    assert "grpc-timeout" in (trailers or headers)["grpc-message"]
    c.close()


def test_non_grpc_content_type_is_415(interop_server):
    c = RawConnection(interop_server.port)
    headers, _, _, _ = c.call(UNARY, b"{}", content_type="application/json")
    assert headers[":status"] == "415"
    c.close()


def test_empty_unary_request_stream_is_unimplemented(interop_server):
    c = RawConnection(interop_server.port)
    headers, _, trailers, _ = c.call(UNARY, end_with_headers=True)
    assert status_of(headers, trailers) == 12
    c.close()


def test_two_messages_to_unary_method_is_unimplemented(interop_server):
    c = RawConnection(interop_server.port)
    headers, _, trailers, _ = c.call(UNARY, grpc_frame(b"") + grpc_frame(b""))
    assert status_of(headers, trailers) == 12
    c.close()


def test_truncated_message_is_internal(interop_server):
    c = RawConnection(interop_server.port)
    headers, _, trailers, _ = c.call(UNARY, grpc_frame(b"\x10\x01")[:-1])
    assert status_of(headers, trailers) == 13
    c.close()


def test_compressed_flag_without_encoding_is_internal(interop_server):
    c = RawConnection(interop_server.port)
    headers, _, trailers, _ = c.call(UNARY, grpc_frame(b"", compressed=True))
    assert status_of(headers, trailers) == 13
    c.close()


def test_unknown_encoding_is_unimplemented_and_lists_ours(interop_server):
    c = RawConnection(interop_server.port)
    headers, _, trailers, _ = c.call(UNARY, grpc_frame(b"", compressed=True), extra_headers=[("grpc-encoding", "br")])
    block = trailers or headers
    assert status_of(headers, trailers) == 12
    assert "gzip" in block["grpc-accept-encoding"]
    c.close()


def test_oversized_header_list_is_resource_exhausted(interop_server):
    c = RawConnection(interop_server.port)
    headers, _, trailers, _ = c.call(UNARY, grpc_frame(b""), extra_headers=[("x-big", "a" * 20000)])
    assert status_of(headers, trailers) == 8
    c.close()


def test_percent_encoded_grpc_message_on_the_wire(interop_server):
    c = RawConnection(interop_server.port)
    # EchoStatus{code: 2, message: "50% ☺"} inside SimpleRequest.response_status (field 7).
    msg = "50% \u263a".encode()
    echo = b"\x08\x02\x12" + bytes([len(msg)]) + msg
    req = b"\x3a" + bytes([len(echo)]) + echo
    headers, _, trailers, _ = c.call(UNARY, grpc_frame(req))
    block = trailers or headers
    assert block["grpc-message"] == "50%25 %E2%98%BA"
    c.close()


def test_garbage_preface_closes_only_that_connection(interop_server, stub):
    s = socket.create_connection(("127.0.0.1", interop_server.port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\x00" * 100)
    s.settimeout(5)
    closed = False
    try:
        while True:
            d = s.recv(65536)
            if not d:
                closed = True
                break
    except (ConnectionResetError, socket.timeout):
        closed = True
    assert closed
    s.close()
    assert stub.EmptyCall(empty_pb2.Empty()) == empty_pb2.Empty()


def test_data_frames_interleaved_across_streams_reach_their_own_calls(interop_server):
    """Each request's message split over two DATA frames, the frames of three streams interleaved
    and sent in one write (so the server reads them in one go): every call gets its own message.
    The connection remembers the stream its last callback was about; this is what must not fool it."""
    c = RawConnection(interop_server.port)
    sizes = [10, 200, 3000]
    sids = []
    messages = []
    for n in sizes:
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", UNARY),
                                  (":authority", "127.0.0.1:%d" % interop_server.port),
                                  ("content-type", "application/grpc"), ("te", "trailers")])
        sids.append(sid)
        messages.append(grpc_frame(b"\x10" + varint(n)))
    for i in (2, 0, 1):
        c.conn.send_data(sids[i], messages[i][:3])
    for i in (1, 2, 0):
        c.conn.send_data(sids[i], messages[i][3:], end_stream=True)
    c.flush()
    for sid, n in zip(sids, sizes):
        headers, data, trailers, reset = c.wait(sid)
        assert reset is None and status_of(headers, trailers) == 0, (sid, headers, trailers, reset)
        assert len(messages_pb2.SimpleResponse.FromString(data[5:]).payload.body) == n
    c.close()


def test_thousand_concurrent_streams_on_one_connection(stub):
    req = messages_pb2.SimpleRequest(response_size=100, payload=messages_pb2.Payload(body=b"\x00" * 100))
    futures = [stub.UnaryCall.future(req, timeout=60) for _ in range(1000)]
    ok = refused = 0
    for f in futures:
        try:
            assert len(f.result().payload.body) == 100
            ok += 1
        except grpc.RpcError as e:
            assert e.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)
            refused += 1
    assert ok + refused == 1000
    assert ok > 0


def test_two_hundred_connections(interop_server):
    def one(_):
        ch = grpc.insecure_channel(interop_server.address, options=[("grpc.use_local_subchannel_pool", 1)])
        try:
            r = test_pb2_grpc.TestServiceStub(ch).UnaryCall(messages_pb2.SimpleRequest(response_size=10), timeout=60)
            return len(r.payload.body)
        finally:
            ch.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(one, range(200)))
    assert results == [10] * 200


def big_stream_request(count, size):
    # StreamingOutputCallRequest{response_parameters: [{size}] * count}
    param = b"\x08" + varint(size)
    one = b"\x12" + varint(len(param)) + param
    return grpc_frame(one * count)


def test_slow_reader_leaves_server_memory_bounded(interop_server):
    """A client that never reads a 1 GiB server stream: with tiny windows (no WINDOW_UPDATE), and
    with huge windows but a socket it stops reading. RSS must stay far below what was asked for."""
    before = interop_server.rss_kib()
    conns = []
    # Never credits the window: the server may only send 64 KiB.
    c1 = RawConnection(interop_server.port, auto_ack=False)
    # Opens the windows wide, then stops reading the socket: TCP backpressure must stop the server.
    c2 = RawConnection(interop_server.port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    c2.conn.increment_flow_control_window(2**31 - 1 - 65535)
    c2.flush()
    for c in (c1, c2):
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", "/grpc.testing.TestService/StreamingOutputCall"),
                                  (":authority", "x"), ("content-type", "application/grpc"), ("te", "trailers")])
        c.conn.send_data(sid, big_stream_request(2048, 512 * 1024), end_stream=True)
        c.flush()
        conns.append(c)
    for _ in range(10):
        c1.pump(0.1)
    time.sleep(3)
    after = interop_server.rss_kib()
    growth_mib = (after - before) / 1024
    # Both streams were live, only held back: c1 got its 64 KiB window's worth, and c2, once it
    # reads again, receives far more than any buffer the server could have held.
    got1 = sum(len(e.data) for e in c1.events if isinstance(e, h2.events.DataReceived))
    assert 60_000 <= got1 <= 70_000
    got2 = 0
    deadline = time.time() + 30
    while got2 <= 8 * 1024 * 1024 and time.time() < deadline:
        c2.pump(0.05)
        got2 += sum(len(e.data) for e in c2.events if isinstance(e, h2.events.DataReceived))
        c2.events.clear()
    assert got2 > 8 * 1024 * 1024
    for c in conns:
        c.close()
    # 2 GiB was requested; a bounded server holds its high-water marks plus socket buffers.
    assert growth_mib < 64, "server RSS grew by %.1f MiB" % growth_mib


def test_ping_flood_gets_enhance_your_calm(interop_server):
    c = RawConnection(interop_server.port)
    for i in range(5):
        c.conn.ping(b"%08d" % i)
    c.flush()
    code = None
    for _ in range(20):
        alive = c.pump(0.2)
        for ev in c.events:
            if isinstance(ev, h2.events.ConnectionTerminated):
                code = ev.error_code
                assert ev.additional_data == b"too_many_pings"
        if code is not None or not alive:
            break
    assert code == 11  # ENHANCE_YOUR_CALM
    c.close()


def test_client_reset_frees_the_stream_and_server_carries_on(interop_server, stub):
    c = RawConnection(interop_server.port)
    for _ in range(300):
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", "/grpc.testing.TestService/FullDuplexCall"),
                                  (":authority", "x"), ("content-type", "application/grpc"), ("te", "trailers")])
        c.conn.reset_stream(sid)
    c.flush()
    c.pump(0.5)
    headers, data, trailers, _ = c.call("/grpc.testing.TestService/EmptyCall", grpc_frame(b""))
    assert status_of(headers, trailers) == 0
    c.close()


def test_health_with_grpcio_health_client(channel):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    h = health_pb2_grpc.HealthStub(channel)
    assert h.Check(health_pb2.HealthCheckRequest(service="")).status == health_pb2.HealthCheckResponse.SERVING
    assert h.Check(health_pb2.HealthCheckRequest(service="grpc.testing.TestService")).status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as e:
        h.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    watch = h.Watch(health_pb2.HealthCheckRequest(service=""))
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    unknown = h.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert next(unknown).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    unknown.cancel()


def test_reflection_with_grpcio_reflection_client(channel):
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    db = ProtoReflectionDescriptorDatabase(channel)
    services = set(db.get_services())
    assert {"grpc.testing.TestService", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
    pool = DescriptorPool(db)
    svc = pool.FindServiceByName("grpc.testing.TestService")
    assert svc.methods_by_name["UnaryCall"].input_type.full_name == "grpc.testing.SimpleRequest"
    assert pool.FindMessageTypeByName("grpc.testing.SimpleResponse").fields_by_name["payload"].message_type.full_name == "grpc.testing.Payload"
    f = pool.FindFileByName("grpc/testing/empty.proto")
    assert "Empty" in f.message_types_by_name


def test_reflection_v1_with_grpcio(channel):
    from grpc_reflection.v1alpha import reflection_pb2  # same messages as v1

    call = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                 request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    reqs = [reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.testing.TestService.UnaryCall"),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.Such")]
    out = list(call(iter(reqs)))
    assert "grpc.reflection.v1.ServerReflection" in [s.name for s in out[0].list_services_response.service]
    assert len(out[1].file_descriptor_response.file_descriptor_proto) == 3  # test.proto + its 2 imports
    assert out[2].error_response.error_code == 5


def test_grpcurl_lists_and_describes(interop_server):
    out = subprocess.run(["grpcurl", "-plaintext", interop_server.address, "list"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "grpc.testing.TestService" in out.stdout.split()
    out = subprocess.run(["grpcurl", "-plaintext", interop_server.address, "describe", "grpc.testing.SimpleRequest"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "response_size" in out.stdout


def test_graceful_shutdown_finishes_in_flight_calls():
    server = ServerProcess("wire-interop-server")
    try:
        ch = grpc.insecure_channel(server.address)
        stub = test_pb2_grpc.TestServiceStub(ch)
        # Five responses 300 ms apart: SIGTERM lands once the first has arrived, with 1.2 s of work
        # still in flight.
        req = messages_pb2.StreamingOutputCallRequest(
            response_parameters=[messages_pb2.ResponseParameters(size=10, interval_us=300_000)] * 5)
        results = []
        first = threading.Event()

        def read():
            sizes = []
            for r in stub.StreamingOutputCall(req, timeout=20):
                sizes.append(len(r.payload.body))
                first.set()
            results.append(sizes)

        t = threading.Thread(target=read)
        t.start()
        assert first.wait(timeout=20), "the first response never came"
        server.proc.send_signal(signal.SIGTERM)
        t.join(timeout=20)
        assert results == [[10] * 5]
        assert server.proc.wait(timeout=20) == 0
        with pytest.raises(grpc.RpcError):
            stub.EmptyCall(empty_pb2.Empty(), timeout=2)
        ch.close()
    finally:
        server.stop(signal.SIGKILL)


def test_sigterm_the_moment_the_server_listens_is_a_graceful_stop():
    # The signal handling must be in place before the port is announced: a signal there once killed
    # the process (exit status -15) four times in five.
    for _ in range(5):
        server = ServerProcess("wire-interop-server")
        assert server.stop() == 0, server.log()


def test_max_concurrent_streams_is_advertised_and_enforced(interop_server):
    c = RawConnection(interop_server.port)
    # h2 assumes no limit until it reads the server's SETTINGS, so these 150 streams all go out; the
    # server must refuse those past its advertised 100 with REFUSED_STREAM and keep the rest.
    sids = []
    for _ in range(150):
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", "/grpc.testing.TestService/FullDuplexCall"),
                                  (":authority", "x"), ("content-type", "application/grpc"), ("te", "trailers")])
        sids.append(sid)
    c.flush()
    for _ in range(20):
        c.pump(0.1)
    assert c.conn.remote_settings.max_concurrent_streams == 100
    refused = {e.stream_id for e in c.events if isinstance(e, h2.events.StreamReset) and e.error_code == 7}
    assert len(refused) == 50
    assert refused == set(sids[100:])
    # The accepted ones are live calls: finishing one yields a normal OK.
    c.conn.end_stream(sids[0])
    c.flush()
    headers, _, trailers, _ = c.wait(sids[0])
    assert status_of(headers, trailers) == 0
    c.close()
