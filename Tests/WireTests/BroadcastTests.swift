import Testing

@testable import Wire

/// The one fan-out behind WatchLeads, FollowWorkPlans and health's Watch.
@Suite struct BroadcastTests {
    @Test func eachSubscriberGetsWhatItsInterestSelectsInOrder() async {
        let hub = Broadcast<String, Int>(buffering: 16)
        let evens = hub.subscribe(0, first: "start")
        let odds = hub.subscribe(1)
        for n in 0..<6 { hub.publish { $0 == n % 2 ? "\(n)" : nil } }
        hub.finish { $0 == 0 ? "end" : nil }
        #expect(await collect(evens) == ["start", "0", "2", "4", "end"])
        #expect(await collect(odds) == ["1", "3", "5"])
        #expect(hub.subscriberCount == 0)
    }

    @Test func aSlowSubscriberLosesItsOldestValuesNotMemory() async {
        let hub = Broadcast<Int, Void>(buffering: 3)
        let slow = hub.subscribe(())
        for n in 0..<100 { hub.publish { _ in n } }
        hub.finish()
        #expect(await collect(slow) == [97, 98, 99])
    }

    @Test func aStreamEndedByItsReaderLeavesTheBroadcast() async {
        let hub = Broadcast<Int, Void>(buffering: 3)
        do {
            let stream = hub.subscribe(())
            #expect(hub.subscriberCount == 1)
            _ = stream
        }
        // The stream is gone: its termination handler removed it.
        #expect(hub.subscriberCount == 0)
    }

    @Test func afterFinishASubscriberGetsItsFirstValueAndAnEndedStream() async {
        let hub = Broadcast<String, Void>(buffering: 3)
        hub.finish()
        hub.publish { _ in "lost" }
        #expect(await collect(hub.subscribe((), first: "NOT_SERVING")) == ["NOT_SERVING"])
    }
}

private func collect<S: AsyncSequence>(_ s: S) async -> [S.Element] {
    var out = [S.Element]()
    do { for try await x in s { out.append(x) } } catch {}
    return out
}
