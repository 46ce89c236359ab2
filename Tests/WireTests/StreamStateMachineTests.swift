import Testing

@testable import Wire

/// The stream state machine on its own, no sockets: every (role, state, event) pair against the
/// rules written out below, then whole calls as each side sees them, then random event sequences
/// for the properties that must hold whatever the peer does.
@Suite struct StreamStateMachineTests {
    typealias Machine = StreamStateMachine
    typealias State = Machine.State

    enum Event: CaseIterable {
        case send, sendEnd, bodyAddedWhilePaused, bodyEmpty, bodyPartlyRead, bodyDrained
        case headers, headersEndingStream, end, settle, streamClosed
    }

    /// What one event did: the action (or a Bool answer, as text) and the machine after it.
    struct Outcome: Equatable, CustomStringConvertible {
        var answer: String
        var state: State
        var settled: Bool
        var description: String { "\(answer) → \(state)\(settled ? " settled" : "")" }
    }

    static var everyState: [(State, Bool)] {
        var out: [(State, Bool)] = [(.closed, true)]
        for i in Machine.Inbound.allCases {
            for o in Machine.Outbound.allCases {
                for settled in [false, true] { out.append((.active(inbound: i, outbound: o), settled)) }
            }
        }
        return out
    }

    static func apply(_ e: Event, to m: inout Machine) -> String {
        switch e {
        case .send: "\(m.send())"
        case .sendEnd: "\(m.sendEnd())"
        case .bodyAddedWhilePaused: "\(m.bodyAdded())"
        case .bodyEmpty: "\(m.bodyRequested(moved: 0, remaining: 0))"
        case .bodyPartlyRead: "\(m.bodyRequested(moved: 10, remaining: 5))"
        case .bodyDrained: "\(m.bodyRequested(moved: 10, remaining: 0))"
        case .headers: "\(m.receivedHeaders(endStream: false))"
        case .headersEndingStream: "\(m.receivedHeaders(endStream: true))"
        case .end:
            receiveEnd(&m)
        case .settle: settle(&m)
        case .streamClosed: "\(m.streamClosed())"
        }
    }

    static func settle(_ m: inout Machine) -> String {
        let (first, action) = m.settle()
        return "(first: \(first), action: \(action))"
    }

    static func receiveEnd(_ m: inout Machine) -> String {
        m.receivedEnd()
        return "()"
    }

    /// The rules, written out independently of the implementation.
    static func expected(_ role: Machine.Role, _ state: State, _ settled: Bool, _ e: Event) -> Outcome {
        guard case .active(let i, let o) = state else {
            let answer: String =
                switch e {
                case .send: "\(Machine.Action.refuse(.streamClosed))"
                case .headers, .headersEndingStream, .streamClosed: "false"
                case .end: "()"
                case .settle: "(first: false, action: \(Machine.Action.none))"
                default: "\(Machine.Action.none)"
                }
            return Outcome(answer: answer, state: .closed, settled: true)
        }
        func out(_ a: Machine.Action, _ i2: Machine.Inbound = i, _ o2: Machine.Outbound = o, settled s2: Bool = settled) -> Outcome {
            Outcome(answer: "\(a)", state: .active(inbound: i2, outbound: o2), settled: s2)
        }
        switch e {
        case .send:
            if settled && role == .server { return out(.refuse(.callEnded)) }
            switch o {
            case .idle: return out(.submitHeaders, i, .open)
            case .open: return out(.none)
            case .paused: return out(.resumeBody, i, .open)
            case .ending, .ended: return out(.refuse(role == .client ? .sendAfterEnd : .callEnded))
            }
        case .sendEnd:
            if role == .server && settled { return out(.none) }
            let s2 = settled || role == .server
            switch o {
            case .idle: return out(role == .server ? .submitTrailersOnly : .none, i, .ended, settled: s2)
            case .open: return out(.none, i, .ending, settled: s2)
            case .paused: return out(.resumeBody, i, .ending, settled: s2)
            case .ending, .ended: return out(.none, settled: s2)
            }
        case .bodyAddedWhilePaused:
            return o == .paused ? out(.resumeBody, i, .open) : out(.none)
        case .bodyEmpty:
            switch o {
            case .ending: return out(.submitEnd, i, .ended)
            case .open, .paused: return out(.pauseBody, i, .paused)
            default: return out(.none)
            }
        case .bodyPartlyRead:
            return o == .paused ? out(.none, i, .open) : out(.none)
        case .bodyDrained:
            switch o {
            case .ending: return out(.submitEnd, i, .ended)
            case .paused: return out(.none, i, .open)
            default: return out(.none)
            }
        case .headers:
            if i == .idle {
                return Outcome(answer: "false", state: .active(inbound: .open, outbound: o), settled: settled)
            }
            return Outcome(answer: "true", state: .active(inbound: .ended, outbound: o), settled: settled)
        case .headersEndingStream:
            return Outcome(answer: "true", state: .active(inbound: .ended, outbound: o), settled: settled)
        case .end:
            return Outcome(answer: "()", state: .active(inbound: .ended, outbound: o), settled: settled)
        case .settle:
            if settled { return Outcome(answer: "(first: false, action: \(Machine.Action.none))", state: state, settled: true) }
            var o2 = o
            var a = Machine.Action.none
            if role == .client && o == .open { o2 = .ending }
            if role == .client && o == .paused { (o2, a) = (.ending, .resumeBody) }
            return Outcome(answer: "(first: true, action: \(a))", state: .active(inbound: i, outbound: o2), settled: true)
        case .streamClosed:
            return Outcome(answer: "\(!settled)", state: .closed, settled: true)
        }
    }

    @Test(arguments: [Machine.Role.client, .server])
    func everyStateAndEventFollowsTheRules(role: Machine.Role) {
        var pairs = 0
        for (state, settled) in Self.everyState {
            for e in Event.allCases {
                var m = Machine(role: role, state: state, settled: settled)
                let answer = Self.apply(e, to: &m)
                let seen = Outcome(answer: answer, state: m.state, settled: m.settled)
                let want = Self.expected(role, state, settled, e)
                #expect(seen == want, "\(role) in \(state)\(settled ? " settled" : ""), event \(e)")
                pairs += 1
            }
        }
        #expect(pairs == (1 + 3 * 5 * 2) * Event.allCases.count)
    }

    @Test func aUnaryCallAsTheServerSeesIt() {
        var m = Machine(role: .server)
        #expect(m.receivedHeaders(endStream: false) == false)
        #expect(m.acceptsMessages)
        m.receivedEnd()
        #expect(m.send() == .submitHeaders)
        #expect(m.sendEnd() == .none)
        #expect(m.outbound == .ending && m.settled)
        #expect(m.bodyRequested(moved: 12, remaining: 0) == .submitEnd)
        #expect(m.send() == .refuse(.callEnded))
        #expect(m.streamClosed() == false)
    }

    @Test func aRefusalBeforeAnyResponseIsTrailersOnlyAndHappensOnce() {
        var m = Machine(role: .server)
        m.receivedHeaders(endStream: true)
        #expect(m.sendEnd() == .submitTrailersOnly)
        #expect(m.sendEnd() == .none)
        #expect(m.bodyRequested(moved: 0, remaining: 0) == .none)
    }

    @Test func aStreamingResponseThatRanDryResumesForItsTrailers() {
        var m = Machine(role: .server)
        m.receivedHeaders(endStream: true)
        #expect(m.send() == .submitHeaders)
        #expect(m.bodyRequested(moved: 5, remaining: 0) == .none)
        #expect(m.bodyRequested(moved: 0, remaining: 0) == .pauseBody)
        #expect(m.bodyAdded() == .resumeBody)
        #expect(m.bodyRequested(moved: 0, remaining: 0) == .pauseBody)
        #expect(m.sendEnd() == .resumeBody)
        #expect(m.bodyRequested(moved: 0, remaining: 0) == .submitEnd)
    }

    @Test func aClientCancelledMidCallIsUnsettledWhenTheStreamCloses() {
        var m = Machine(role: .server)
        m.receivedHeaders(endStream: false)
        _ = m.send()
        #expect(m.streamClosed() == true)
        #expect(m.send() == .refuse(.streamClosed) && m.sendEnd() == .none && !m.acceptsMessages)
    }

    @Test func aClientCallEndsItsRequestHalfWhenItsStatusIsSettled() {
        var m = Machine(role: .client)
        #expect(m.send() == .submitHeaders)
        #expect(m.bodyRequested(moved: 0, remaining: 0) == .pauseBody)
        #expect(m.receivedHeaders(endStream: false) == false)
        #expect(m.acceptsMessages)
        // The trailers arrive while the request half is paused: it must still end.
        #expect(m.receivedHeaders(endStream: true) == true)
        #expect(m.settle() == (first: true, action: .resumeBody))
        #expect(!m.acceptsMessages)
        #expect(m.bodyRequested(moved: 0, remaining: 0) == .submitEnd)
        #expect(m.send() == .refuse(.sendAfterEnd))
        #expect(m.settle().first == false)
    }

    @Test func aClientCannotSendAfterClosingItsRequestStream() {
        var m = Machine(role: .client)
        _ = m.send()
        #expect(m.sendEnd() == .none)
        #expect(m.send() == .refuse(.sendAfterEnd))
        #expect(m.bodyRequested(moved: 3, remaining: 0) == .submitEnd)
    }

    /// Whatever the order of events: the end goes out at most once, nothing is submitted after the
    /// stream closed, a settled call stays settled, and a server never sends after its status.
    @Test(arguments: [Machine.Role.client, .server])
    func randomEventSequencesKeepTheInvariants(role: Machine.Role) {
        var rng = SplitMix(seed: 20_261_129)
        for _ in 0..<2000 {
            var m = Machine(role: role)
            var ends = 0
            var wasSettled = false
            var closed = false
            for _ in 0..<12 {
                let e = Event.allCases[Int(rng.next() % UInt64(Event.allCases.count))]
                let before = m
                let answer = Self.apply(e, to: &m)
                if answer == "\(Machine.Action.submitEnd)" || answer == "\(Machine.Action.submitTrailersOnly)" { ends += 1 }
                if closed {
                    #expect(m.state == .closed)
                    #expect(answer != "\(Machine.Action.submitHeaders)" && answer != "\(Machine.Action.resumeBody)")
                }
                if wasSettled { #expect(m.settled) }
                if role == .server && before.settled && e == .send { #expect(answer != "\(Machine.Action.submitHeaders)") }
                wasSettled = m.settled
                closed = m.isClosed
            }
            #expect(ends <= 1)
        }
    }
}

/// A small deterministic generator, so a failing sequence is the same on every run.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
