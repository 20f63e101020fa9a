// MetricsService: the scheduler's /metrics (a DaemonService, started when
// `metrics-addrs` or `metrics-port` is set): each scrape takes the daemon's
// job states and load and the jobs' store usage (cached), and renders them
// with the service's own counters (swift-metrics, backed by the Prometheus
// registry: scrapes served). A listener that cannot bind is logged and the
// scheduler goes on without metrics (the scrape target shows as down).
// `MetricsFiles` builds the same snapshot from the status file for `backy
// metrics` and writes textfiles atomically for node_exporter.

import ChunkStore
import CoreMetrics
import Foundation
import Logging
import Prometheus
import Scheduler
import ServerSupport

// @unchecked Sendable: `server` is set in start() and cleared in stop(), which the daemon calls from one thread in turn; everything else is `let` or `Locked`.
public final class MetricsService: DaemonService, @unchecked Sendable {
    let daemon: SchedulerDaemon
    let log: Logger
    let usage: StoreUsageCache
    private var server: MetricsHTTPServer?
    private let baseDir = Locked("")
    /// Counters of the service itself, through the swift-metrics API.
    let live = PrometheusCollectorRegistry()
    private let scrapes: CoreMetrics.Counter

    public init(daemon: SchedulerDaemon, log: Logger) {
        self.daemon = daemon
        self.log = log
        usage = StoreUsageCache(log: log)
        scrapes = CoreMetrics.Counter(label: "backy_metrics_scrapes_total", dimensions: [],
                                      factory: PrometheusMetricsFactory(registry: live))
    }

    public func start(_ config: SchedulerConfig) throws {
        baseDir.with { $0 = config.baseDir }
        let m = config.monitoring
        guard m.metricsEnabled else { return }
        let server = MetricsHTTPServer(log: log) { [self] in
            scrapes.increment()
            return snapshot().render(extra: live)
        }
        do {
            let port = try server.start(addresses: m.metricsAddrs, port: m.metricsPort)
            log.info("Serving metrics on \(m.metricsAddrs.map { ListenError.address($0, port) }.joined(separator: ", ")) /metrics")
            self.server = server
        } catch {
            log.error("metrics: \(error); the scheduler runs without /metrics")
        }
    }

    public func reload(_ config: SchedulerConfig) {
        usage.keep(only: Set(config.jobs.map { config.baseDir + "/" + $0.name }))
    }

    public func stop() {
        server?.stop()
        server = nil
    }

    /// The daemon's state now.
    func snapshot() -> MetricsSnapshot {
        let now = Date()
        let base = baseDir.get
        let entries = daemon.statusEntries(now: now)
        let load = daemon.load()
        let jobs = entries.map { MetricsSnapshot.JobFacts(entry: $0, store: usage.usage(jobPath: base + "/" + $0.job, now: now)) }
        return MetricsSnapshot(jobs: jobs, running: load.running, queued: load.queued, workerLimit: load.workerLimit, taken: now)
    }
}

public enum MetricsFiles {
    /// The snapshot of `backy metrics`: the status file's job states (for
    /// the configured jobs) and each job's store, measured now.
    public static func snapshot(config: SchedulerConfig, log: Logger) throws -> MetricsSnapshot {
        let path = config.statusFile
        guard let st = Posix.status(path) else {
            throw BackyError(.notFound, "no status file at \(path) (is the scheduler running?)")
        }
        let bytes = try Posix.readFile(path, limit: Posix.Limit.configuration)
        let entries = try StatusFile.parse(String(decoding: bytes, as: UTF8.self), source: path)
        let configured = Set(config.jobs.map(\.name))
        let jobs = entries.filter { configured.contains($0.job) }.map {
            MetricsSnapshot.JobFacts(entry: $0, store: StoreUsageCache.measure(jobPath: config.baseDir + "/" + $0.job, log: log))
        }
        let load = MetricsSnapshot.load(of: entries)
        return MetricsSnapshot(jobs: jobs, running: load.running, queued: load.queued, workerLimit: config.workerLimit,
                               taken: Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec)))
    }

    /// Writes `text` to `path` atomically (a temp file in the same
    /// directory, then rename), mode 0644, as node_exporter's textfile
    /// collector needs.
    public static func writeTextfile(_ path: String, _ text: String) throws {
        try Posix.writeFileAtomically(path, Array(text.utf8), mode: 0o644, durable: false)
    }
}
