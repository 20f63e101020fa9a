// NodeHeartbeats.swift — each scheduler with RADOS jobs writes a heartbeat
// object `node/<NAME>` (JSON: node, time, lease, running and queued runs,
// worker limit, whether it stopped on purpose, lease operations so far) into the namespace
// `.backy-nodes` of the cluster pool (the global `store:` pool, else the pool
// of the first RADOS job by name: the same on every node with the same
// configuration) every third of the lease. `backy check` reads them all,
// so it gives the same answer on every node: a node that has not written
// its heartbeat for 3 lease durations (and did not stop on purpose) is a
// WARNING.

import ChunkStore
import Foundation
import Rados

public struct NodeHeartbeat: Codable, Equatable, Sendable {
    public var node: String
    /// Seconds since the epoch.
    public var time: Double
    /// The node's lease duration, seconds.
    public var lease: Double
    public var running: Int
    public var queued: Int
    public var workerLimit: Int
    /// The scheduler stopped on purpose (SIGTERM); not a dead node.
    public var stopped: Bool
    /// RADOS operations on leases, run records and heartbeats since the
    /// scheduler started (bench/scheduler-cluster).
    public var operations: Int?
}

public enum NodeHeartbeats {
    /// A job's default namespace is its name, and no job name starts with a
    /// dot (SchedulerConfig.invalidJobName), so no job lands here.
    public static let namespace = ".backy-nodes"
    static let prefix = "node/"
    static let limit = 64 << 10

    /// The pool of the heartbeats, nil without RADOS jobs.
    public static func pool(_ config: SchedulerConfig) -> String? {
        config.globalStorePool ?? config.jobs.first { $0.store != nil }?.store?.pool
    }

    static func write(_ hb: NodeHeartbeat, io: RadosIoctx) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        try io.writeFull(prefix + hb.node, Array(try e.encode(hb)))
    }

    /// Every node's heartbeat (unreadable objects skipped).
    static func readAll(io: RadosIoctx) throws -> [NodeHeartbeat] {
        var out: [NodeHeartbeat] = []
        for name in try io.objects() where name.hasPrefix(prefix) {
            guard let got = try io.readAll(name, limit: limit),
                  let hb = try? JSONDecoder().decode(NodeHeartbeat.self, from: Data(got.bytes)) else { continue }
            out.append(hb)
        }
        return out.sorted { $0.node < $1.node }
    }

    /// The lines `check` reports as WARNING: nodes silent for 3 lease
    /// durations (nil: the configuration has no RADOS jobs).
    public static func silentNodes(_ config: SchedulerConfig, now: Date = Date()) -> Result<[String], BackyError>? {
        guard let pool = pool(config) else { return nil }
        do {
            let cluster = try RadosCluster(access: CephAccess(), environment: StoreFactory.cephEnvironment,
                                           opTimeout: max(2, Double(config.cluster.lease) / 3))
            let io = try cluster.ioctx(pool: pool, namespace: namespace)
            var lines: [String] = []
            for hb in try readAll(io: io) where !hb.stopped {
                let age = now.timeIntervalSince1970 - hb.time
                if age > 3 * hb.lease {
                    lines.append("node \(hb.node) has not renewed anything for \(Int(age)) s (more than 3 leases of \(Int(hb.lease)) s): its jobs run elsewhere; if it is gone for good, remove rados:\(pool)/\(namespace)/\(prefix)\(hb.node)")
                }
            }
            return .success(lines)
        } catch {
            return .failure(BackyError(.io, "cannot read the nodes' heartbeats in rados:\(pool)/\(namespace): \(error)"))
        }
    }
}

extension SchedulerDaemon {
    /// Writes this node's heartbeat every third of the lease until stopped;
    /// a last one marks it stopped.
    func startHeartbeat() {
        let t = Thread { [self] in
            cond.lock()
            let pool = NodeHeartbeats.pool(config)
            cond.unlock()
            guard let pool else { return }
            var io: RadosIoctx?
            var lastError = ""
            while true {
                heartbeatCond.lock()
                let stop = heartbeatStopped
                heartbeatCond.unlock()
                cond.lock()
                let hb = NodeHeartbeat(node: node, time: Date().timeIntervalSince1970, lease: leases.duration,
                                       running: running, queued: queueCount, workerLimit: config.workerLimit, stopped: stop,
                                       operations: leases.operations.get)
                cond.unlock()
                do {
                    if io == nil { io = try leases.io(RadosStoreSpec(pool: pool, namespace: NodeHeartbeats.namespace)) }
                    try NodeHeartbeats.write(hb, io: io!)
                    leases.operations.with { $0 += 1 }
                    lastError = ""
                } catch {
                    let msg = "cannot write this node's heartbeat: \(error)"
                    if msg != lastError { log.error("\(msg)") }
                    lastError = msg
                }
                if stop {
                    heartbeatCond.lock()
                    heartbeatDone = true
                    heartbeatCond.broadcast()
                    heartbeatCond.unlock()
                    return
                }
                heartbeatCond.lock()
                if !heartbeatStopped { _ = heartbeatCond.wait(until: Date().addingTimeInterval(leases.duration / 3)) }
                heartbeatCond.unlock()
            }
        }
        t.name = "backy-heartbeat"
        heartbeatRunning = true
        t.start()
    }

    /// Writes the last heartbeat (marked stopped) and waits for it (at
    /// most 10 s).
    func stopHeartbeat() {
        guard heartbeatRunning else { return }
        heartbeatCond.lock()
        heartbeatStopped = true
        heartbeatCond.broadcast()
        let deadline = Date().addingTimeInterval(10)
        while !heartbeatDone && Date() < deadline { _ = heartbeatCond.wait(until: deadline) }
        heartbeatCond.unlock()
    }
}
