// LeasedRuns.swift — how the daemon runs a RADOS job when several schedulers
// share it (docs/rados.md, "Leases"): take the job's lease (never wait for
// it: a lease another node holds means that node runs the job, and this one
// looks again a few seconds later), re-read the job's history from RADOS,
// and run only if the slot is still due; write the job's run record at the
// end while the lease is still held, then release it. A restore drill of a
// RADOS job also runs under the lease, and only if the job's drill record
// (shared in the store) says no node drilled it meanwhile. Also the shared view:
// the status writer reads, for every RADOS job, who holds its lease and its
// run record, so every node shows the same failures, last error and node.

import ChunkStore
import Foundation
import Rados

extension Schedule {
    /// The tags of `tags` whose slot containing `due` has no complete
    /// revision yet: for each tag, the slot is the cell [G, G + interval)
    /// of the tag's grid (with the job's spread) that holds `due`; a
    /// complete revision carrying the tag and dated at or after G means
    /// the slot ran (on whichever node). Tags outside the schedule are
    /// kept (they were asked for).
    public func uncoveredTags(_ tags: Set<String>, due: Date, spread: Int, history: [ScheduleRevision]) -> Set<String> {
        tags.filter { tag in
            guard let iv = interval(of: tag) else { return true }
            let start = nextInInterval(now: due.addingTimeInterval(-Double(iv)), interval: iv, spread: spread)
            return !history.contains { $0.complete && $0.tags.contains(tag) && $0.timestamp >= start }
        }
    }
}

extension SchedulerDaemon {
    /// Seconds between looks at a lease another node holds.
    var leasePoll: Double { min(5, max(1, leases.duration / 6)) }

    /// Takes the job's lease and decides whether the slot is still due.
    /// Returns the lease and the tags to back up; nil if this node does not
    /// run it now (the job is planned again and its worker is free).
    func takeSlot(_ j: JobState, def: JobDefinition, spec: RadosStoreSpec, tags: Set<String>, due: Date,
                  manual: Bool) -> (RadosLease, Set<String>)? {
        let name = def.name
        let lease: RadosLease
        do {
            guard let l = try tryLease(j, spec: spec, else: "not running it here") else { return nil }
            lease = l
        } catch {
            log.error("\(name): cannot take the job's lease: \(error)")
            noteError(j, "cannot take the job's lease: \(error)")
            finish(j, ok: false, interrupted: false)
            wakeStatusWriter()
            return nil
        }
        // The history as it is now, whoever wrote it. An incomplete revision
        // belongs to a run that lost its lease (or died): fence it first, so
        // that run can never complete it, then read again.
        cache.invalidate(jobPath: j.path)
        var history = cache.history(jobPath: j.path)
        let open = history.revisions.filter { !$0.complete }.map(\.id)
        if !open.isEmpty {
            for id in open {
                do {
                    if try RadosBackend.fence(io: leases.io(spec), revision: id, by: node) {
                        log.info("\(name): fenced incomplete revision \(id) of an earlier run")
                    }
                } catch {
                    // Unfenced, that run might still complete it: do not run now.
                    log.warning("\(name): cannot fence incomplete revision \(id): \(error); trying again in \(Int(leasePoll)) s")
                    lease.release()
                    skipped(j, holder: nil, retryAt: Date().addingTimeInterval(leasePoll), history: nil)
                    return nil
                }
            }
            cache.invalidate(jobPath: j.path)
            history = cache.history(jobPath: j.path)
        }
        let record: RunRecord?
        do {
            record = try leases.record(spec)
        } catch {
            log.warning("\(name): \(error); ignoring it")
            record = nil
        }
        let now = Date()
        if !manual, let r = record, !r.ok, r.failures > 0 {
            let retry = Date(timeIntervalSince1970: r.finished + backoff(failures: r.failures))
            if retry > now {
                lease.release()
                log.info("\(name): its last run failed on \(r.node) (\(r.failures) in a row); next try at \(Timestamp.format(retry))")
                skipped(j, holder: nil, retryAt: retry, history: nil, record: r)
                return nil
            }
        }
        let due = manual ? tags : def.schedule.uncoveredTags(tags, due: due, spread: j.spread, history: history.revisions)
        if due.isEmpty {
            lease.release()
            log.info("\(name): this slot ran already\(record.map { " (on \($0.node))" } ?? ""); planning the next")
            skipped(j, holder: nil, retryAt: nil, history: history, record: record)
            return nil
        }
        log.info("\(name): took the job's lease (\(Int(leases.duration)) s)")
        return (lease, due)
    }

    /// Takes the job's lease for a restore drill and reads the job's last
    /// drill anew: a drill runs on one node at a time, and once per
    /// interval across them (the drill record is shared in the store).
    /// nil: not now (the drill is planned again and the worker is free).
    func takeDrillLease(_ j: JobState, spec: RadosStoreSpec) -> RadosLease? {
        let name = j.def.name
        let lease: RadosLease
        do {
            guard let l = try tryLease(j, spec: spec, else: "restore drill later") else { return nil }
            lease = l
        } catch {
            log.error("\(name): cannot take the job's lease for its restore drill: \(error); trying again in \(Int(leasePoll)) s")
            skipped(j, holder: nil, retryAt: Date().addingTimeInterval(leasePoll), history: nil)
            return nil
        }
        cache.invalidate(jobPath: j.path)
        let history = cache.history(jobPath: j.path)
        if let interval = j.def.drillInterval, let last = history.lastDrill?.date,
           Date().timeIntervalSince(last) < Double(interval) / 2 {
            lease.release()
            log.info("\(name): restore drill ran at \(Timestamp.format(last)); planning the next")
            skipped(j, holder: nil, retryAt: nil, history: history)
            return nil
        }
        return lease
    }

    /// Tries the job's lease once. nil when another node holds it: that
    /// node runs the job; this one frees the worker and looks again in
    /// `leasePoll` seconds (`doing`: what the log line says it does).
    private func tryLease(_ j: JobState, spec: RadosStoreSpec, else doing: String) throws -> RadosLease? {
        switch try leases.take(spec) {
        case .held(let other):
            log.info("\(j.def.name): lease held by \(other); \(doing) (looking again in \(Int(leasePoll)) s)")
            skipped(j, holder: other, retryAt: Date().addingTimeInterval(leasePoll), history: nil)
            return nil
        case .taken(let lease):
            return lease
        }
    }

    /// A slot (or a drill) this node does not run: free the worker and plan
    /// again (`retryAt`: look again then with the same tags; else from
    /// `history`).
    func skipped(_ j: JobState, holder: String?, retryAt: Date?, history: JobHistory?, record: RunRecord? = nil) {
        cond.lock()
        defer {
            running -= 1
            cond.broadcast()
            cond.unlock()
        }
        let drill = j.drillRun
        j.drillRun = false
        if let holder { j.holder = holder }
        if let record { adopt(record, into: j) }
        if j.removed {
            if jobs[j.def.name] === j { jobs[j.def.name] = nil }
            return
        }
        if let p = j.pending {
            j.def = p
            j.spread = p.spread
            j.pending = nil
        }
        if stopping { return }
        if let retryAt {
            if drill { j.drillNext = retryAt } else { j.nextTime = retryAt }
            setStatus(j, j.failures > 0 ? JobStatusText.retry : JobStatusText.waiting)
        } else {
            plan(j, history: history ?? JobHistory(), now: Date())
        }
    }

    /// Writes the run record (only while the lease is held) and releases
    /// the lease. Returns the failures in a row across all nodes.
    func recordRun(_ j: JobState, spec: RadosStoreSpec, lease: RadosLease, started: Date, ok: Bool) -> Int {
        let before = (try? leases.record(spec)) ?? nil
        cond.lock()
        let error = j.lastError
        cond.unlock()
        let r = RunRecord(node: node, started: started.timeIntervalSince1970, finished: Date().timeIntervalSince1970, ok: ok,
                          failures: ok ? 0 : (before?.failures ?? 0) + 1, error: ok ? nil : error)
        do {
            try leases.write(r, lease: lease)
        } catch {
            log.error("\(j.def.name): cannot write the run record (the lease may have lapsed): \(error)")
        }
        lease.release()
        cond.lock()
        j.record = r
        j.holder = nil
        cond.unlock()
        return r.failures
    }

    /// Takes a record's failures and error as the job's (under `cond`).
    func adopt(_ r: RunRecord, into j: JobState) {
        j.record = r
        j.failures = r.failures
        j.lastError = r.ok ? nil : r.error
    }

    /// Reads who holds each RADOS job's lease and its run record; a job
    /// whose record changed (another node ran it) has its history read
    /// again. `full`: read every RADOS job's history again anyway.
    func refreshClusterView(full: Bool) {
        cond.lock()
        let list = jobs.values.filter { $0.def.store != nil && !$0.removed }.map { ($0, $0.def.store!, $0.record) }
        cond.unlock()
        for (j, spec, old) in list {
            let holder: String?
            let record: RunRecord?
            do {
                holder = try leases.holder(spec)
                record = try leases.record(spec)
            } catch {
                continue
            }
            if full || record != old { cache.invalidate(jobPath: j.path) }
            cond.lock()
            j.holder = holder
            if let record, j.status != JobStatusText.running { adopt(record, into: j) }
            cond.unlock()
        }
    }
}
