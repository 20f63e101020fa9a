// StoreUsageCache: StoreUsage per job directory, measured at most every
// `maxAge` seconds (a measurement lists and stats every chunk file, so the
// scheduler must not do it for every job on every scrape).

import ChunkStore
import Foundation
import Logging

// @unchecked Sendable: the cached usage per job is read and changed only under `lock`.
public final class StoreUsageCache: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String: (taken: Date, usage: StoreUsage?)] = [:]
    public let maxAge: TimeInterval
    private let log: Logger

    public init(maxAge: TimeInterval = 300, log: Logger = Logger(label: "backy")) {
        self.maxAge = maxAge
        self.log = log
    }

    /// The job's store usage, measured anew when older than `maxAge`; nil
    /// if the job directory cannot be read.
    public func usage(jobPath: String, now: Date = Date()) -> StoreUsage? {
        lock.lock()
        if let e = entries[jobPath], now.timeIntervalSince(e.taken) < maxAge, e.taken <= now {
            lock.unlock()
            return e.usage
        }
        lock.unlock()
        let u = StoreUsageCache.measure(jobPath: jobPath, log: log)
        lock.lock()
        entries[jobPath] = (now, u)
        lock.unlock()
        return u
    }

    /// Forgets jobs that are no longer configured.
    public func keep(only paths: Set<String>) {
        lock.lock()
        entries = entries.filter { paths.contains($0.key) }
        lock.unlock()
    }

    public static func measure(jobPath: String, log: Logger) -> StoreUsage? {
        guard Posix.isDirectory(jobPath) else { return nil }
        do {
            return try StoreUsage.measure(try Job(path: jobPath, logger: log))
        } catch {
            log.debug("cannot measure the store of \(jobPath): \(error)")
            return nil
        }
    }
}
