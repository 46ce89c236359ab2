import NIOConcurrencyHelpers

/// Fans values out to any number of subscribers, each an `AsyncStream` with its own interest (a
/// filter, a contractor, a service name). Publishing never waits: a subscriber that falls behind
/// loses its oldest values (`bufferingNewest`), so one slow reader cannot grow memory or hold up
/// the rest. WatchLeads, FollowWorkPlans and health's Watch all fan out through one of these.
public final class Broadcast<Element: Sendable, Interest: Sendable>: Sendable {
    private struct State {
        var subscribers: [Int: (interest: Interest, continuation: AsyncStream<Element>.Continuation)] = [:]
        var nextID = 0
        var finished = false
    }

    private let state = NIOLockedValueBox(State())
    private let buffering: Int

    /// - Parameter buffering: Values kept per subscriber that has not read them; past it the oldest go.
    public init(buffering: Int) {
        self.buffering = buffering
    }

    /// How many streams are open (for tests and metrics).
    public var subscriberCount: Int { state.withLockedValue { $0.subscribers.count } }

    /// A stream of what is published for `interest` from now on. `first`, when given, is yielded
    /// before anything published later (the current value, for a watch that starts with it); it is
    /// evaluated under the broadcast's lock, so a value changed and published meanwhile is either
    /// in `first` or delivered after it, never lost. After `finish`, the stream yields `first` and ends.
    public func subscribe(_ interest: Interest, first: @autoclosure () -> Element? = nil) -> AsyncStream<Element> {
        let (stream, continuation) = AsyncStream<Element>.makeStream(bufferingPolicy: .bufferingNewest(buffering))
        let open = state.withLockedValue { s in
            if let first = first() { continuation.yield(first) }
            if s.finished { return false }
            let id = s.nextID
            s.nextID += 1
            s.subscribers[id] = (interest, continuation)
            continuation.onTermination = { [weak self] _ in
                self?.state.withLockedValue { _ = $0.subscribers.removeValue(forKey: id) }
            }
            return true
        }
        if !open { continuation.finish() }
        return stream
    }

    /// Offers a value to every subscriber: `select` makes each one's value from its interest, or
    /// returns nil to pass it by. Runs under the broadcast's lock, so values reach every subscriber
    /// in the order they were published; keep `select` cheap and never publish from inside it.
    public func publish(_ select: (Interest) -> Element?) {
        state.withLockedValue { s in
            for (_, sub) in s.subscribers {
                if let value = select(sub.interest) { sub.continuation.yield(value) }
            }
        }
    }

    /// Yields each subscriber its `last` value (nil: none) and ends every stream, for good.
    public func finish(_ last: (Interest) -> Element? = { _ in nil }) {
        let ending = state.withLockedValue { s in
            s.finished = true
            defer { s.subscribers.removeAll() }
            return Array(s.subscribers.values)
        }
        // Outside the lock: finish() runs onTermination, which takes it.
        for sub in ending {
            if let value = last(sub.interest) { sub.continuation.yield(value) }
            sub.continuation.finish()
        }
    }
}
