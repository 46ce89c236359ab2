import ServiceLifecycle
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Hands freed heap memory back to the kernel every few seconds.
///
/// A request near the 4 MiB limit (a megabyte string, 100,000 repeated elements) is decoded, copied
/// into Swift values and answered on whichever thread ran it; glibc keeps what was freed in that
/// thread's arena for reuse. `malloc_trim(0)` releases the free pages of every arena; on a quiet heap
/// it costs microseconds, so once per interval is negligible. Measured (docs/benchmarks.md, "Memory
/// after extreme requests"): 4–6 MB given back per service after such rounds. The larger growth the
/// hostile-clients probe reported had other causes, now removed: streams left open by refusals too
/// big to send, and oversized values stored (field limits). `LEADWIRE_MALLOC_TRIM=off` turns it off.
public struct MemoryTrimmer: Service {
    public let seconds: Int

    public init(seconds: Int = 5) {
        self.seconds = seconds
    }

    public static var enabled: Bool { ProcessInfoEnv.value("LEADWIRE_MALLOC_TRIM") != "off" }

    public func run() async throws {
        guard Self.enabled else { return try await gracefulShutdown() }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(seconds))
                if Task.isCancelled { break }
                _ = glibcMallocTrim(0)
            }
        }
    }
}

/// glibc's `int malloc_trim(size_t pad)` (malloc.h, which the Glibc module does not export).
@_silgen_name("malloc_trim")
private func glibcMallocTrim(_ pad: Int) -> Int32
