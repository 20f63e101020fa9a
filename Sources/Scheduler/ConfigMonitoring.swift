// ConfigMonitoring.swift — the configuration keys of monitoring, in `global`:
// `failures-warning` (default 3) and `failures-critical` (default 6): after
// that many failed runs of a job in a row `backy check` is WARNING and
// CRITICAL; `metrics-addrs` and `metrics-port`: where the scheduler serves
// Prometheus metrics on /metrics (off unless one of them is set; addresses
// default to 127.0.0.1 and ::1, the port to 9750).

import ChunkStore
import Foundation

/// The monitoring keys of `global`.
public struct MonitoringSettings: Equatable, Sendable {
    public var failuresWarning = 3
    public var failuresCritical = 6
    /// Where /metrics is served; empty: not at all.
    public var metricsAddrs: [String] = []
    public var metricsPort = MonitoringSettings.defaultMetricsPort

    public static let defaultMetricsPort = 9750
    public static let defaultMetricsAddrs = ["127.0.0.1", "::1"]
    static let keys: Set<String> = ["failures-warning", "failures-critical", "metrics-addrs", "metrics-port"]

    public init() {}

    public var metricsEnabled: Bool { !metricsAddrs.isEmpty }
}

extension SchedulerConfig {
    /// Reads the monitoring keys of `global`; errors are recorded in `p`.
    static func parseMonitoring(_ gm: YAMLMap, problems p: Problems) -> MonitoringSettings {
        var m = MonitoringSettings()
        func count(_ k: String) -> Int? {
            var out: Int?
            p.attempt {
                guard let v = gm[k] else { return }
                guard let n = v.int, n >= 1, n <= 10000 else {
                    throw p.error(gm, k, "expected a number of failed runs from 1 to 10000, found \(show(v))", prefix: "global")
                }
                out = Int(n)
            }
            return out
        }
        if let n = count("failures-warning") { m.failuresWarning = n }
        if let n = count("failures-critical") { m.failuresCritical = n }
        if gm["failures-warning"] != nil || gm["failures-critical"] != nil, m.failuresWarning > m.failuresCritical {
            p.errors.append(p.error(gm, gm["failures-critical"] != nil ? "failures-critical" : "failures-warning",
                                    "failures-warning (\(m.failuresWarning)) must not be above failures-critical (\(m.failuresCritical))",
                                    prefix: "global"))
        }
        var addrsGiven = false
        p.attempt {
            guard let v = gm["metrics-addrs"] else { return }
            addrsGiven = true
            let parts: [String]
            if let l = v.list {
                parts = l.compactMap(\.string)
                guard parts.count == l.count else { throw p.error(gm, "metrics-addrs", "expected addresses", prefix: "global") }
            } else if let s = v.string, v.map == nil {
                parts = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            } else {
                throw p.error(gm, "metrics-addrs", "expected a comma-separated list of addresses, found \(show(v))", prefix: "global")
            }
            m.metricsAddrs = parts.filter { !$0.isEmpty }
        }
        p.attempt {
            guard let v = gm["metrics-port"] else { return }
            guard let n = v.int, n >= 1, n <= 65535 else {
                throw p.error(gm, "metrics-port", "expected a port number from 1 to 65535, found \(show(v))", prefix: "global")
            }
            m.metricsPort = Int(n)
            if !addrsGiven { m.metricsAddrs = MonitoringSettings.defaultMetricsAddrs }
        }
        return m
    }
}
