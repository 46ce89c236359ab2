"""Clients that try to exhaust a server: silent and idle connections, too many connections, clients
that never read, refusals too big for a header block, strings with NUL, fields with the wrong wire
type. Each test starts its own wire-interop-server with the limits it probes, on a free port."""
import os
import socket
import time

import grpc
import h2.events
import pytest

from conftest import ServerProcess, wait_for
from h2raw import RawConnection, grpc_frame, status_of
from wire_interop import messages_pb2, test_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

UNARY = "/grpc.testing.TestService/UnaryCall"
FULL_DUPLEX = "/grpc.testing.TestService/FullDuplexCall"


@pytest.fixture
def server_with(request):
    """Starts wire-interop-server with the given flags; stops it (and checks it lived) afterwards."""
    started = []

    def start(*args):
        s = ServerProcess("wire-interop-server", list(args))
        started.append(s)
        return s

    yield start
    for s in started:
        assert s.alive(), "the server died"
        assert s.stop() == 0


def healthy(server, timeout=5):
    ch = grpc.insecure_channel(server.address, options=[("grpc.use_local_subchannel_pool", 1)])
    try:
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        return r.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        ch.close()


def closed_by_server(sock, within):
    """True when the server closes `sock` (EOF or reset) within `within` seconds."""
    deadline = time.time() + within
    sock.settimeout(min(0.2, within))
    while True:
        try:
            d = sock.recv(65536)
            if not d:
                return True
        except socket.timeout:
            if time.time() >= deadline:
                return False
        except (ConnectionResetError, BrokenPipeError):
            return True


def goaway(conn):
    for ev in conn.events:
        if isinstance(ev, h2.events.ConnectionTerminated):
            return ev
    return None


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def test_silent_connection_is_closed_after_the_handshake_timeout(server_with):
    server = server_with("--handshake-timeout-ms", "1000")
    s = socket.create_connection(("127.0.0.1", server.port))
    started = time.time()
    assert closed_by_server(s, within=5), "a connection that sent nothing was kept open"
    assert time.time() - started >= 0.9
    s.close()


def test_four_hundred_silent_connections_do_not_stop_health_checks(server_with):
    """The attack of the issue, at a cap of 100 connections: health checks keep being answered
    (silent connections make room), the silent ones are closed, descriptors come back."""
    server = server_with("--max-connections", "100", "--handshake-timeout-ms", "3000")
    fds_before = open_fds(server.pid)
    silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(400)]
    try:
        for _ in range(3):
            assert healthy(server), "health check failed with 400 silent connections open"
        time.sleep(0.5)
        assert open_fds(server.pid) <= fds_before + 100 + 5
        time.sleep(4)
        still_open = sum(1 for s in silent if not closed_by_server(s, within=0.05))
        assert still_open == 0, "%d silent connections still open after the handshake timeout" % still_open
        assert open_fds(server.pid) <= fds_before + 2
        print("\nfds: before %d, with 400 silent clients <= cap, after %d" % (fds_before, open_fds(server.pid)))
    finally:
        for s in silent:
            s.close()


def test_idle_connection_gets_goaway_and_is_closed(server_with):
    server = server_with("--idle-timeout-ms", "1000")
    c = RawConnection(server.port)
    headers, data, trailers, _ = c.call(UNARY, grpc_frame(messages_pb2.SimpleRequest(response_size=1).SerializeToString()))
    assert status_of(headers, trailers) == 0
    deadline = time.time() + 5
    while time.time() < deadline and goaway(c) is None:
        if not c.pump(0.2):
            break
    g = goaway(c)
    assert g is not None, "no GOAWAY on an idle connection"
    assert g.error_code == 0
    assert closed_by_server(c.sock, within=3)
    c.close()


def test_busy_connections_at_the_cap_refuse_the_newest_with_goaway(server_with):
    server = server_with("--max-connections-per-peer", "3")
    busy = []
    for _ in range(3):
        c = RawConnection(server.port)
        sid = c.conn.get_next_available_stream_id()
        # A bidirectional call left open: the connection is busy, never evicted.
        c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", FULL_DUPLEX), (":authority", "x"),
                                  ("content-type", "application/grpc"), ("te", "trailers")])
        # One message asking for one answer, and the answer awaited: the call is running, so the
        # server counts the connection busy before the next one arrives (a fixed pause was not
        # always long enough on a loaded machine).
        ask = messages_pb2.StreamingOutputCallRequest(response_parameters=[messages_pb2.ResponseParameters(size=1)])
        c.conn.send_data(sid, grpc_frame(ask.SerializeToString()))
        c.flush()

        def answered(c=c, sid=sid):
            return any(isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid for ev in c.events)

        deadline = time.time() + 10
        while time.time() < deadline and not answered():
            assert c.pump(0.2), "the server closed a connection it had admitted"
        assert answered(), "the call never answered"
        busy.append(c)
    newest = RawConnection(server.port)
    deadline = time.time() + 5
    while time.time() < deadline and goaway(newest) is None:
        if not newest.pump(0.2):
            break
    g = goaway(newest)
    assert g is not None and g.last_stream_id == 0
    assert b"connection refused" in (g.additional_data or b"")
    for c in busy:
        c.close()
    newest.close()
    # Room again once the server has seen them leave.
    def room():
        try:
            return healthy(server)
        except grpc.RpcError:
            return False
    wait_for("room at the cap after the busy connections closed", room, timeout=10)


def test_connections_whose_calls_ended_make_room_at_the_cap(server_with):
    """A connection counts as busy only while a call is in progress: two connections that each made
    a call and finished it are idle, so a third one at the cap is admitted and the oldest idle one
    is closed (with GOAWAY) to make room."""
    server = server_with("--max-connections-per-peer", "2")
    body = grpc_frame(messages_pb2.SimpleRequest(response_size=1).SerializeToString())
    first, second = RawConnection(server.port), RawConnection(server.port)
    for c in (first, second):
        headers, data, trailers, reset = c.call(UNARY, body)
        assert status_of(headers, trailers) == 0 and reset is None
    third = RawConnection(server.port)
    headers, data, trailers, reset = third.call(UNARY, body)
    assert status_of(headers, trailers) == 0 and reset is None, "the newest connection was refused"
    assert goaway(third) is None
    deadline = time.time() + 5
    while time.time() < deadline and goaway(first) is None:
        if not first.pump(0.2):
            break
    assert goaway(first) is not None or closed_by_server(first.sock, within=1), "the oldest idle connection was kept"
    headers, data, trailers, reset = second.call(UNARY, body)
    assert status_of(headers, trailers) == 0 and reset is None, "the younger idle connection was closed too"
    for c in (first, second, third):
        c.close()


def test_a_silent_connection_makes_room_before_an_older_idle_one(server_with):
    """At the cap, a connection that never finished its handshake is closed before an idle one that
    did, however old the idle one is."""
    server = server_with("--max-connections-per-peer", "2", "--handshake-timeout-ms", "30000")
    body = grpc_frame(messages_pb2.SimpleRequest(response_size=1).SerializeToString())
    idle = RawConnection(server.port)
    headers, data, trailers, reset = idle.call(UNARY, body)
    assert status_of(headers, trailers) == 0 and reset is None
    silent = socket.create_connection(("127.0.0.1", server.port))
    time.sleep(0.3)  # admitted before the next one arrives
    newest = RawConnection(server.port)
    headers, data, trailers, reset = newest.call(UNARY, body)
    assert status_of(headers, trailers) == 0 and reset is None, "the newest connection was refused"
    assert closed_by_server(silent, within=3), "the silent connection was kept"
    headers, data, trailers, reset = idle.call(UNARY, body)
    assert status_of(headers, trailers) == 0 and reset is None, "the older idle connection was closed instead"
    assert goaway(idle) is None
    silent.close()
    for c in (idle, newest):
        c.close()


def test_client_that_never_reads_is_cut_off_and_memory_returns(server_with):
    """Clients ask for 1.7 MB answers and never read (no WINDOW_UPDATE): past the server's budget of
    unread responses new calls get RESOURCE_EXHAUSTED, other callers are served, and after the stall
    timeout the connections are closed and the memory given back."""
    server = server_with("--stall-timeout-ms", "2000", "--max-unread-response-bytes", str(32 * 1024 * 1024))
    before = server.rss_kib()
    request = grpc_frame(messages_pb2.SimpleRequest(response_size=1_700_000).SerializeToString())
    readers = []
    statuses = []
    for _ in range(60):
        c = RawConnection(server.port, auto_ack=False)
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", UNARY), (":authority", "x"),
                                  ("content-type", "application/grpc"), ("te", "trailers")])
        c.conn.send_data(sid, request, end_stream=True)
        c.flush()
        readers.append((c, sid))
    time.sleep(1)
    stalled = []
    for c, sid in readers:
        c.pump(0.05)
        status = None
        for ev in c.events:
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                status = dict(ev.headers).get("grpc-status")
        statuses.append(status)
        if status is None:
            stalled.append(c)
    during = server.rss_kib()
    refused = statuses.count("8")
    assert refused + len(stalled) == 60
    assert refused > 0, "no call was refused past the unread-response budget"
    # A well-behaved caller is still answered.
    stub = test_pb2_grpc.TestServiceStub(grpc.insecure_channel(server.address))
    r = stub.UnaryCall(messages_pb2.SimpleRequest(response_size=10), timeout=10)
    assert len(r.payload.body) == 10
    deadline = time.time() + 8
    closed = sum(1 for c in stalled if closed_by_server(c.sock, within=max(0.05, deadline - time.time())))
    assert closed == len(stalled), "stalled connections were not closed"
    time.sleep(6)
    after = server.rss_kib()
    for c, _ in readers:
        c.close()
    print("\nRSS KiB: before %d, during 60 never-reading clients %d, after %d; refused %d" % (before, during, after, refused))
    # AddressSanitizer keeps freed memory in quarantine (256 MB): RSS says nothing there.
    if not os.environ.get("ASAN_OPTIONS"):
        assert (during - before) < 160 * 1024
        assert (after - before) < 50 * 1024


def test_refusal_too_big_for_a_header_block_still_reaches_the_caller(server_with):
    server = server_with()
    stub = test_pb2_grpc.TestServiceStub(grpc.insecure_channel(server.address))
    message = "x" * 100_000
    with pytest.raises(grpc.RpcError) as e:
        stub.UnaryCall(messages_pb2.SimpleRequest(response_status=messages_pb2.EchoStatus(code=3, message=message)), timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith("xxxx") and e.value.details().endswith("…")
    assert len(e.value.details().encode()) < 8192


def test_nul_in_a_string_field_is_invalid_argument_naming_it(server_with):
    server = server_with()
    stub = test_pb2_grpc.TestServiceStub(grpc.insecure_channel(server.address))
    with pytest.raises(grpc.RpcError) as e:
        stub.UnaryCall(messages_pb2.SimpleRequest(response_status=messages_pb2.EchoStatus(code=0, message="Nul\0x")), timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "response_status.message" in e.value.details()


def test_known_field_with_another_wire_type_and_groups_are_unknown_fields(server_with):
    """python-protobuf keeps these as unknown fields; so must we (protobuf-c alone refuses them)."""
    server = server_with()
    ch = grpc.insecure_channel(server.address)
    call = ch.unary_unary(UNARY, request_serializer=lambda b: b, response_deserializer=messages_pb2.SimpleResponse.FromString)
    good = messages_pb2.SimpleRequest(response_size=7).SerializeToString()
    # Field 4 (fill_username, bool) as a length-delimited value; field 2 as fixed32; a group (field 20).
    wrong_type = b"\x22\x03abc" + b"\x15\x01\x00\x00\x00"
    group = b"\xa3\x01" + b"\x08\x01" + b"\xa4\x01"
    # python-protobuf accepts the same bytes.
    parsed = messages_pb2.SimpleRequest.FromString(good + wrong_type + group)
    assert parsed.response_size == 7
    r = call(good + wrong_type + group, timeout=5)
    assert len(r.payload.body) == 7
    ch.close()


def test_response_over_the_send_limit_is_resource_exhausted(server_with):
    server = server_with()
    ch = grpc.insecure_channel(server.address, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    stub = test_pb2_grpc.TestServiceStub(ch)
    with pytest.raises(grpc.RpcError) as e:
        stub.UnaryCall(messages_pb2.SimpleRequest(response_size=5 * 1024 * 1024), timeout=10)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit" in e.value.details()
    ch.close()


def test_refusal_fits_the_peers_header_list_limit(server_with):
    """A peer advertising SETTINGS_MAX_HEADER_LIST_SIZE 4096 still gets the status: the message is
    shortened (percent-encoding counted) and the details dropped before the block passes its limit."""
    import h2.settings

    server = server_with()
    c = RawConnection(server.port, settings={h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 4096})
    c.pump(0.2)
    body = grpc_frame(messages_pb2.SimpleRequest(response_status=messages_pb2.EchoStatus(code=3, message="щ" * 50_000)).SerializeToString())
    headers, data, trailers, reset = c.call(UNARY, body)
    assert reset is None
    block = trailers or headers
    assert block["grpc-status"] == "3"
    size = sum(len(k.encode()) + len(v.encode()) + 32 for k, v in block.items())
    assert size <= 4096, size
    assert block["grpc-message"].startswith("%D1%89")
    c.close()


def test_priorities_are_declined_and_priority_frames_change_nothing(server_with):
    """The server's SETTINGS decline RFC 7540 priorities (SETTINGS_NO_RFC7540_PRIORITIES = 1, RFC
    9218): a flood of PRIORITY frames building a dependency chain over idle streams is read and
    dropped, and calls on the same connection are answered as before."""
    import h2.events

    server = server_with()
    c = RawConnection(server.port)
    c.pump(0.2)
    declared = {}
    for ev in c.events:
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            declared.update({int(k): v.new_value for k, v in ev.changed_settings.items()})
    assert declared.get(0x9) == 1, declared
    body = grpc_frame(messages_pb2.SimpleRequest(response_size=3).SerializeToString())
    headers, data, trailers, reset = c.call(UNARY, body)
    assert status_of(headers, trailers) == 0 and reset is None
    # Each idle stream depends on the one before (an RFC 7540 server would build this tree).
    for i in range(20_000):
        sid = 1001 + 2 * i
        c.conn.prioritize(sid, weight=1 + i % 256, depends_on=sid - 2, exclusive=i % 2 == 0)
        if i % 500 == 499:
            c.flush()
    c.flush()
    for _ in range(3):
        headers, data, trailers, reset = c.call(UNARY, body)
        assert status_of(headers, trailers) == 0 and reset is None
        assert len(data) == 5 + len(messages_pb2.SimpleResponse(payload=messages_pb2.Payload(body=b"\0" * 3)).SerializeToString())
    assert not any(isinstance(ev, h2.events.ConnectionTerminated) for ev in c.events)
    c.close()
    assert healthy(server)
