import NIOCore

/// Where a call's handler continues after a suspension: its connection's event loop. The task a
/// database write resumes then writes its answer straight into the stream, instead of continuing on
/// the global executor and hopping to the loop with a copy (SubmitLead: 141 -> 129 µs of CPU per
/// lead). So a handler must not run long stretches of CPU work after an `await` (a document
/// rendered, a file parsed): that goes to a thread of its own, as any work that would hold the
/// loop's other connections up.
final class EventLoopTaskExecutor: TaskExecutor, Sendable {
    let loop: any EventLoop
    private let core: ServerCore

    init(loop: any EventLoop, core: ServerCore) {
        self.loop = loop
        self.core = core
    }

    func enqueue(_ job: consuming ExecutorJob) {
        if core.loopsClosing.load(ordering: .sequentiallyConsistent) {
            return globalConcurrentExecutor.enqueue(job)
        }
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
