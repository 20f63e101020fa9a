// Daemon.swift — `backy scheduler`: the long-running daemon (README.md, "Running it in production"). It
// takes `<base-dir>/.lock`, creates the job directories and their `config`, plans
// every job with the schedule math (ScheduleMath), and runs due jobs — at most
// `worker-limit` at once, first come first served — as subprocesses of its own
// binary: `backy -b <jobdir> -l <jobdir>/backy.log backup <tags>`, then expiry
// (Expiry) in-process under the job's `.backup` lock, then `backy … purge`; restore
// drills (`drill`, DrillSchedule.swift) run as `backy … drill` the same way. A failed
// run backs off 2, 4, 8 … minutes up to 6 h (README.md, "Schedules, retries, retention"); so does a run that exits 0
// without leaving the revision it was asked for (no hot loop: backy 2.4 restarted it at once).
//
// The status file is rewritten every `status-interval`; the telnet console answers
// on `telnet-addrs`:`telnet-port` (and `console-socket`); services injected by the
// command line (DaemonService: the in-process NBD server) start, follow reloads and
// stop with the daemon. SIGHUP (and the console's `reload`) re-reads the
// configuration: added, removed and changed jobs take effect at once, running jobs
// finish first. SIGTERM/SIGINT/SIGQUIT stop the daemon: running children get
// SIGTERM (their process group), are waited for (SIGKILL after `stopGrace`), and
// their incomplete revisions are cleaned by the next backup.
//
// One job's broken files fail that job only: a job directory that cannot be
// prepared makes its runs fail (counted, retried), and its problems — with
// those of its history — reach the status file, `check` and the console, and
// are logged once when they change; the daemon and the other jobs go on.
//
// Threads: the calling thread runs the planning loop; one thread per running job
// (≤ worker-limit) waits for its children; one writes the status file; one reads
// signals from a self-pipe; the console runs on one SwiftNIO event loop. All job
// state is guarded by `cond`.

import ChunkStore
import Rados
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Job status strings (2.4's, plus "waiting for retry" while backing off).
public enum JobStatusText {
    public static let waiting = "waiting for deadline"
    public static let retry = "waiting for retry"
    public static let queued = "queued for execution"
    public static let running = "running"
    public static let finished = "finished"
    public static let failed = "failed"
}

// @unchecked Sendable: job states, counters and the configuration are read and changed only under `cond`; the status loop's flags only under `statusCond` (taken before `cond`, never after).
public final class SchedulerDaemon: @unchecked Sendable {
    /// The version shown by the console's banner.
    public static let version = "2.4-compatible"

    // @unchecked Sendable: every field is read and changed only under the daemon's `cond`.
    final class JobState: @unchecked Sendable {
        var def: JobDefinition
        var spread: Int
        let path: String
        var status = ""
        var nextTime: Date?
        var nextTags: Set<String> = []
        var failures = 0
        var triggered = false
        /// The queued or running run was asked for (`run`), not scheduled.
        var manualRun = false
        var pid: pid_t = 0
        var removed = false
        var pending: JobDefinition?
        /// Why the job directory could not be prepared (its runs fail until
        /// it can); nil when it is fine.
        var setupProblem: String?
        /// The problems last logged, so each change is logged once.
        var loggedProblems = "-"
        /// Restore drills: when the next is due; whether the queued or running
        /// run is a drill (DrillSchedule.swift).
        var drillNext: Date?
        var drillRun = false
        /// When the daemon last ran a drill (a drill that records nothing must
        /// not be retried at once).
        var drillAttempt: Date?
        /// The last error line of the last failed run (nil after a success).
        var lastError: String?
        /// Whether the current run of this job failed already (a failed
        /// backup's error is kept over its purge's).
        var runFailed = false
        /// When `nextTime` was planned (JobLeases: the slot a lease run checks).
        var plannedAt: Date?
        /// RADOS jobs: the node holding the job's lease, and the job's run
        /// record, as last read (ClusterView.swift).
        var holder: String?
        var record: RunRecord?

        init(def: JobDefinition, baseDir: String) {
            self.def = def
            spread = def.spread
            path = baseDir + "/" + def.name
        }

        var isWaiting: Bool { status == JobStatusText.waiting || status == JobStatusText.retry }
    }

    public let log: Logger
    /// The command run for backups and purges.
    public let command: String
    /// How long stopping waits for children after SIGTERM before SIGKILL.
    public var stopGrace: TimeInterval = 60
    /// Services run beside the jobs (see DaemonService).
    public var services: [DaemonService] = []

    var config: SchedulerConfig
    let cond = NSCondition()
    var jobs: [String: JobState] = [:]
    private var queue: [JobState] = []
    var running = 0
    var stopping = false
    private var killedChildren = false
    let cache: HistoryCache
    /// This scheduler's name among several sharing RADOS jobs (`node-name`,
    /// `--node`), and their leases (JobLeases.swift).
    public let node: String
    let leases: JobLeases
    let heartbeatCond = NSCondition()
    var heartbeatStopped = false
    var heartbeatDone = false
    var heartbeatRunning = false
    /// Status cycles since the last full re-read of the RADOS histories, and
    /// when the cluster view was last read (status thread only).
    var viewCycles = 0
    var lastViewRefresh = Date.distantPast
    /// Queued runs (under `cond`).
    var queueCount: Int { queue.count }
    private let reloadMutex = NSLock()
    private let statusCond = NSCondition()
    private var statusStopped = false
    private var statusWakeup = false
    private var statusDone = false
    private var lastStatusError = ""
    private var console: ConsoleServer?
    private var daemonLock: FileLock?

    /// `command`: the backy binary to run (`resolveCommand`).
    /// `node`: the node name (nil: the configuration's `node-name`).
    public init(config: SchedulerConfig, command: String, log: Logger = Logger(label: "backy"), node: String? = nil) {
        self.config = config
        self.log = log
        self.command = command
        cache = HistoryCache(log: log)
        self.node = node ?? config.cluster.nodeName
        leases = JobLeases(node: self.node, duration: Double(config.cluster.lease))
    }

    /// The jobs this scheduler shows: every RADOS job (any node may run
    /// it, and all show it) and the directory jobs this node may run.
    func visible(_ jobs: [JobDefinition]) -> [JobDefinition] {
        jobs.filter { $0.store != nil || $0.runs(on: node) }
    }

    /// The `backy` executable to run: `given` ($BACKY_CMD), else this
    /// process's own binary (argv[0] made absolute, found in `searchPath`,
    /// or /proc/self/exe).
    public static func resolveCommand(given: String?, searchPath: [String]) -> String {
        if let given, !given.isEmpty { return given }
        let arg0 = CommandLine.arguments.first ?? "backy"
        if arg0.contains("/") {
            let abs = arg0.hasPrefix("/") ? arg0 : FileManager.default.currentDirectoryPath + "/" + arg0
            let std = SchedulerConfig.standardize(abs)
            if access(std, X_OK) == 0 { return std }
        } else {
            for dir in searchPath {
                let cand = dir + "/" + arg0
                if access(cand, X_OK) == 0, !Posix.isDirectory(cand) {
                    return cand.hasPrefix("/") ? cand : SchedulerConfig.standardize(FileManager.default.currentDirectoryPath + "/" + cand)
                }
            }
        }
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        if n > 0 {
            let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if !exe.hasSuffix(" (deleted)") { return exe }
        }
        return arg0
    }

    // MARK: - Running

    /// Runs the daemon until a stop signal. Throws a one-line error for a missing
    /// base-dir, a held daemon lock (exit code 69) or an unusable job directory.
    public func run() throws -> Int32 {
        let cfg = config
        guard Posix.isDirectory(cfg.baseDir) else {
            throw ConfigError("\(cfg.path): global.base-dir: \(cfg.baseDir) does not exist (create it first)")
        }
        let lock = FileLock(path: cfg.baseDir + "/.lock")
        guard try lock.tryLock(.exclusive) else {
            throw BackyError(.locked, "failed to acquire lock \(lock.path): another scheduler is running", exitCode: 69)
        }
        daemonLock = lock
        SignalPipe.install()
        // Histories of many RADOS jobs are read through one connection.
        RadosBackend.sharedConnections.with { if $0 == nil { $0 = [:] } }
        let shown = visible(cfg.jobs)
        let radosJobs = shown.filter { $0.store != nil }.count
        log.info("Starting scheduler: \(shown.count) jobs from \(cfg.path), base-dir \(cfg.baseDir), worker-limit \(cfg.workerLimit), running \(command)\(radosJobs > 0 ? ", node \(node), lease \(cfg.cluster.lease) s" : "")")

        // One job's broken directory fails that job (its runs fail and are
        // counted, status and check show why), never the daemon.
        var setup: [String: String] = [:]
        for def in shown { setup[def.name] = prepareOrExplain(def, baseDir: cfg.baseDir) }
        for s in services { try s.start(cfg) }
        let now = Date()
        var histories: [String: JobHistory] = [:]
        for def in shown { histories[def.name] = cache.history(jobPath: cfg.baseDir + "/" + def.name) }
        cond.lock()
        for def in shown {
            let j = JobState(def: def, baseDir: cfg.baseDir)
            j.setupProblem = setup[def.name] ?? nil
            jobs[def.name] = j
            log.info("\(def.name): started task generator loop")
            plan(j, history: histories[def.name]!, now: now)
        }
        cond.unlock()

        let statusThread = Thread { [self] in statusLoop() }
        statusThread.name = "backy-status"
        statusThread.start()

        let server = ConsoleServer(backend: self, log: log, maxConnections: cfg.consoleMaxConnections)
        server.start(addresses: cfg.telnetAddrs, port: cfg.telnetPort)
        if let path = cfg.consoleSocket { server.start(socket: path, group: cfg.consoleSocketGroup) }
        console = server

        let signalThread = Thread { [self] in signalLoop() }
        signalThread.name = "backy-signals"
        signalThread.start()
        if radosJobs > 0 { startHeartbeat() }

        planningLoop()
        shutdown()
        return 0
    }

    /// Creates the job directory (only its last component, mode 0700, or
    /// 0750 with `group-access`) and writes its `config` when the content
    /// differs.
    func prepareJobDirectory(_ def: JobDefinition, baseDir: String) throws {
        let path = baseDir + "/" + def.name
        if !Posix.isDirectory(path) {
            guard Posix.isDirectory(baseDir) else { throw BackyError(.notFound, "base-dir \(baseDir) does not exist") }
            cond.lock()
            let group = config.groupAccess
            cond.unlock()
            try Job.createDirectory(path, groupAccess: group)
        }
        try writeJobConfig(def, path: path)
    }

    /// `prepareJobDirectory`, with a failure logged and returned as the
    /// job's problem (nil when it worked).
    func prepareOrExplain(_ def: JobDefinition, baseDir: String) -> String? {
        do {
            try prepareJobDirectory(def, baseDir: baseDir)
            return nil
        } catch {
            let why = "cannot prepare the job directory \(baseDir)/\(def.name): \(error)"
            log.error("\(def.name): \(why)")
            return why
        }
    }

    func writeJobConfig(_ def: JobDefinition, path: String) throws {
        if let store = def.store {
            // Job locks last at most half the lease: a dead node's job
            // locks have lapsed by the time its leases have.
            let half = max(1, (leases.duration / 2).rounded(.up))
            try Job.prepareRadosJob(path: path, source: def.source, store: store,
                                    lockDuration: half < RadosBackend.defaultLockDuration ? half : nil)
            return
        }
        let text = Array((YAML.flow(.map(def.source)) + "\n").utf8)
        let cfg = path + "/config"
        if let old = try? Posix.readFile(cfg, limit: Posix.Limit.metadata), old == text { return }
        try Posix.writeFileAtomically(cfg, text, mode: 0o440, durable: false)
    }

    /// Sets a job's next deadline and tags (under `cond`).
    func plan(_ j: JobState, history: JobHistory, now: Date) {
        var (time, tags) = j.def.schedule.next(now: now, spread: j.spread, history: history.revisions)
        if j.failures > 0 {
            time = now.addingTimeInterval(backoff(failures: j.failures))
        }
        j.nextTime = time
        j.nextTags = tags
        j.plannedAt = now
        planDrill(j, history: history, now: now)
        setStatus(j, j.failures > 0 ? JobStatusText.retry : JobStatusText.waiting)
    }

    func setStatus(_ j: JobState, _ status: String) {
        j.status = status
        log.info("\(j.def.name): status \(status)")
    }

    /// Moves due jobs to the queue and starts queued ones while workers are free.
    private func planningLoop() {
        cond.lock()
        defer { cond.unlock() }
        while !stopping {
            let now = Date()
            var wake = now.addingTimeInterval(30)
            var due: [JobState] = []
            for j in jobs.values where j.isWaiting && j.def.runs(on: node) {
                if j.triggered || j.nextTime! <= now {
                    due.append(j)
                } else if j.nextTime! < wake {
                    wake = j.nextTime!
                }
            }
            due.sort { ($0.nextTime!, $0.def.name) < ($1.nextTime!, $1.def.name) }
            for j in due {
                j.manualRun = j.triggered
                j.triggered = false
                log.info("\(j.def.name): got deadline trigger")
                setStatus(j, JobStatusText.queued)
                queue.append(j)
            }
            // Restore drills of jobs not due for a backup, after the backups.
            for j in jobs.values where j.isWaiting && j.def.runs(on: node) {
                guard let d = j.drillNext else { continue }
                if d <= now {
                    log.info("\(j.def.name): restore drill due")
                    j.drillRun = true
                    setStatus(j, JobStatusText.queued)
                    queue.append(j)
                } else if d < wake {
                    wake = d
                }
            }
            while running < config.workerLimit, !queue.isEmpty {
                let j = queue.remove(at: queue.firstIndex { !$0.drillRun } ?? 0)
                guard j.status == JobStatusText.queued, jobs[j.def.name] === j else { continue }
                start(j)
            }
            _ = cond.wait(until: wake)
        }
    }

    /// Starts a worker thread for a queued job (under `cond`).
    private func start(_ j: JobState) {
        running += 1
        setStatus(j, JobStatusText.running)
        let def = j.def
        let tags = j.nextTags
        let due = j.nextTime ?? Date()
        let drill = j.drillRun
        let t = Thread { [self] in drill ? executeDrill(j) : execute(j, def: def, tags: tags, due: due) }
        t.name = "backy-job"
        t.start()
    }

    /// One scheduled run: backup, expiry, purge; then the next plan.
    private func execute(_ j: JobState, def: JobDefinition, tags planned: Set<String>, due: Date) {
        let name = def.name
        let path = j.path
        var tags = planned
        // A RADOS job runs only under its lease, and only if the slot is
        // still due once the lease is ours (JobLeases.swift).
        var lease: RadosLease?
        var feed: LeaseFeed?
        if let spec = def.store {
            cond.lock()
            let manual = j.manualRun
            cond.unlock()
            guard let (l, t) = takeSlot(j, def: def, spec: spec, tags: planned, due: due, manual: manual) else { return }
            lease = l
            tags = t
            do {
                feed = try LeaseFeed(lease: l)
            } catch {
                log.error("\(name): \(error)")
            }
        }
        let tagList = def.schedule.sortedTags(tags).joined(separator: ",")
        log.info("\(name): running backup [\(tagList)] due \(Timestamp.format(due).replacingOccurrences(of: " ", with: "T"))")
        let problem = prepareOrExplain(def, baseDir: Posix.parentDirectory(path))
        cond.lock()
        j.setupProblem = problem
        cond.unlock()
        let started = Date()
        cond.lock()
        j.runFailed = false
        cond.unlock()
        let leaseArgs = feed == nil ? [] : ["--lease-fd", "3"]
        let rc = lease != nil && feed == nil ? -1
            : runChild(j, ["-b", path, "-l", path + "/backy.log", "backup"] + leaseArgs + [tagList], what: "backup", passFD: feed?.childFD)
        feed?.stop()
        var ok = rc == 0
        cond.lock()
        let interrupted = stopping
        cond.unlock()
        if interrupted {
            lease?.release()
            finish(j, ok: false, interrupted: true)
            return
        }
        if ok {
            cache.invalidate(jobPath: path)
            let h = cache.history(jobPath: path)
            let made = h.revisions.contains {
                $0.complete && $0.timestamp >= started.addingTimeInterval(-1) && tags.isSubset(of: $0.tags)
            }
            if !made {
                log.warning("\(name): backup exited 0 but left no new complete revision tagged [\(tagList)]; counting it as failed")
                noteError(j, "backup exited 0 but left no new complete revision tagged [\(tagList)]")
                ok = false
            }
        }
        if let lease, !lease.isHeld {
            // Not ours any more: another node may run the job now.
            log.error("\(name): lost the job's lease (\(lease.lost ?? "")); skipping expiry and purge")
            noteError(j, "lost the job's lease during the run")
            finish(j, ok: false, interrupted: false, failures: recordRun(j, spec: def.store!, lease: lease, started: started, ok: false))
            wakeStatusWriter()
            return
        }
        log.info("\(name): Expiring old revisions")
        do {
            let out = try Expiry.run(jobPath: path, jobName: name, schedule: def.schedule, now: Date(), log: log)
            if let out, !out.removed.isEmpty { log.info("\(name): expired \(out.removed.count) revisions") }
        } catch {
            log.error("\(name): expiry failed: \(error)")
        }
        cond.lock()
        let skipPurge = stopping
        cond.unlock()
        if !skipPurge {
            log.info("\(name): Purging unused data")
            _ = runChild(j, ["-b", path, "-l", path + "/backy.log", "purge"], what: "purging")
        }
        let shared = lease.map { recordRun(j, spec: def.store!, lease: $0, started: started, ok: ok) }
        finish(j, ok: ok, interrupted: false, failures: shared)
        // `check` and `backy metrics` read the status file: a run's result
        // is in it now, not up to status-interval later.
        wakeStatusWriter()
    }

    /// Asks the status loop to write the status file now (never called with
    /// `cond` held: the status loop takes `statusCond`, then `cond`).
    func wakeStatusWriter() {
        statusCond.lock()
        statusWakeup = true
        statusCond.broadcast()
        statusCond.unlock()
    }

    /// A scheduled restore drill of the job's newest revision; then the next plan.
    private func executeDrill(_ j: JobState) {
        let name = j.def.name
        // A RADOS job drills under its lease, and only if no node drilled
        // it meanwhile (LeasedRuns.swift).
        var lease: RadosLease?
        if let spec = j.def.store {
            guard let l = takeDrillLease(j, spec: spec) else { return }
            lease = l
        }
        log.info("\(name): running restore drill")
        cond.lock()
        j.drillAttempt = Date()
        // A drill's error is the drill's (drill.json, check); it must not
        // show as the last error of the job's backups.
        let (keptError, keptFailed) = (j.lastError, j.runFailed)
        cond.unlock()
        defer {
            cond.lock()
            (j.lastError, j.runFailed) = (keptError, keptFailed)
            cond.unlock()
        }
        let rc = runChild(j, ["-b", j.path, "-l", j.path + "/backy.log", "drill"], what: "restore drill")
        log.debug("\(name): restore drill returned \(rc)")
        if let lease {
            lease.release()
            cache.invalidate(jobPath: j.path)
        }
        let history = cache.history(jobPath: j.path)
        cond.lock()
        defer {
            running -= 1
            cond.broadcast()
            cond.unlock()
        }
        j.drillRun = false
        if stopping {
            setStatus(j, "interrupted")
            return
        }
        if j.removed {
            if jobs[name] === j { jobs[name] = nil }
            return
        }
        if let p = j.pending {
            j.def = p
            j.spread = p.spread
            j.pending = nil
            j.failures = 0
        }
        plan(j, history: history, now: Date())
    }

    /// Runs one child and waits for it; -1 if it could not be started. A
    /// failed child's last error line is logged with its return code and
    /// kept for the status file and the console.
    private func runChild(_ j: JobState, _ args: [String], what: String, passFD: Int32? = nil) -> Int32 {
        let logPath = j.path + "/backy.log"
        let offset = RunError.offset(logPath)
        let pid: pid_t
        do {
            log.debug("\(j.def.name): starting \(command) \(args.joined(separator: " "))")
            pid = try ChildProcess.spawn(command, args, outputFile: logPath, passFD: passFD)
        } catch {
            log.error("\(j.def.name): \(error.localizedDescription)")
            log.info("\(j.def.name): finished \(what) with return code -1: \(error.localizedDescription)")
            noteError(j, "Error: \(error.localizedDescription)")
            return -1
        }
        cond.lock()
        j.pid = pid
        if stopping { ChildProcess.signalGroup(pid, killedChildren ? SIGKILL : SIGTERM) }
        cond.unlock()
        let rc = ChildProcess.wait(pid)
        cond.lock()
        j.pid = 0
        cond.unlock()
        if rc > 128 { log.warning("\(j.def.name): backy \(args[4]) was killed by signal \(rc - 128)") }
        if rc == 0 {
            log.info("\(j.def.name): finished \(what) with return code 0")
        } else {
            let err = RunError.last(logPath: logPath, since: offset)
                ?? (rc > 128 ? "killed by signal \(rc - 128)" : "no error line in \(logPath)")
            log.info("\(j.def.name): finished \(what) with return code \(rc): \(err)")
            noteError(j, err)
        }
        return rc
    }

    /// Keeps a run's error for the status file and the console (the first
    /// failure of a run wins: a purge after a failed backup does not hide it).
    func noteError(_ j: JobState, _ error: String) {
        cond.lock()
        if !j.runFailed { j.lastError = error }
        j.runFailed = true
        cond.unlock()
    }

    /// Records a run's result and plans the job's next run.
    /// `failures`: a RADOS job's failures in a row across all nodes.
    func finish(_ j: JobState, ok: Bool, interrupted: Bool, failures: Int? = nil) {
        cache.invalidate(jobPath: j.path)
        let history = cache.history(jobPath: j.path)
        cond.lock()
        defer {
            running -= 1
            cond.broadcast()
            cond.unlock()
        }
        if interrupted {
            setStatus(j, "interrupted")
            return
        }
        if ok {
            j.failures = 0
            j.lastError = nil
            setStatus(j, JobStatusText.finished)
        } else {
            j.failures = failures ?? j.failures + 1
            setStatus(j, JobStatusText.failed)
            log.warning("\(j.def.name): retrying in \(Int(backoff(failures: j.failures))) seconds")
        }
        if j.removed {
            if jobs[j.def.name] === j { jobs[j.def.name] = nil }
            log.info("\(j.def.name): left the configuration; not scheduling it again")
            return
        }
        if let p = j.pending {
            j.def = p
            j.spread = p.spread
            j.pending = nil
            j.failures = 0
        }
        if stopping { return }
        plan(j, history: history, now: Date())
    }

    // MARK: - Stopping

    /// Asks the daemon to stop: children get SIGTERM, the planning loop ends.
    public func requestStop() {
        cond.lock()
        if stopping {
            // A second stop signal: do not wait any longer.
            killedChildren = true
            for j in jobs.values where j.pid > 0 { ChildProcess.signalGroup(j.pid, SIGKILL) }
        } else {
            stopping = true
            log.info("Terminating all tasks")
            queue.removeAll()
            for j in jobs.values where j.pid > 0 { ChildProcess.signalGroup(j.pid, SIGTERM) }
        }
        cond.broadcast()
        cond.unlock()
    }

    private func shutdown() {
        cond.lock()
        let deadline = Date().addingTimeInterval(stopGrace)
        while running > 0 {
            if Date() >= deadline && !killedChildren {
                log.warning("Children still running after \(Int(stopGrace)) s; killing them")
                killedChildren = true
                for j in jobs.values where j.pid > 0 { ChildProcess.signalGroup(j.pid, SIGKILL) }
            }
            _ = cond.wait(until: min(deadline, Date().addingTimeInterval(1)))
        }
        cond.unlock()
        statusCond.lock()
        statusStopped = true
        statusCond.broadcast()
        let statusDeadline = Date().addingTimeInterval(10)
        while !statusDone && Date() < statusDeadline { _ = statusCond.wait(until: statusDeadline) }
        statusCond.unlock()
        console?.stop()
        for s in services { s.stop() }
        stopHeartbeat()
        writeStatus()
        // Shut the cluster connections down now (JobLeases.close).
        leases.close()
        RadosBackend.sharedConnections.with { $0 = nil }
        daemonLock?.unlock()
        log.info("Scheduler stopped")
    }

    private func signalLoop() {
        while let sig = SignalPipe.next() {
            log.info("Received signal \(sig)")
            if sig == SIGHUP {
                _ = reload()
            } else {
                requestStop()
            }
        }
    }

    // MARK: - Status file

    private func statusLoop() {
        while true {
            // RADOS jobs: who runs them, their records (once per
            // status-interval, not at every early write after a run); every
            // 10th time their histories are read again whatever changed.
            cond.lock()
            let interval = TimeInterval(config.statusInterval)
            cond.unlock()
            if Date().timeIntervalSince(lastViewRefresh) >= interval * 0.9 {
                lastViewRefresh = Date()
                viewCycles = (viewCycles + 1) % 10
                refreshClusterView(full: viewCycles == 0)
            }
            writeStatus()
            statusCond.lock()
            if !statusStopped && !statusWakeup {
                cond.lock()
                let interval = TimeInterval(config.statusInterval)
                cond.unlock()
                _ = statusCond.wait(until: Date().addingTimeInterval(interval))
            }
            statusWakeup = false
            let stop = statusStopped
            if stop {
                statusDone = true
                statusCond.broadcast()
            }
            statusCond.unlock()
            if stop { return }
        }
    }

    private func writeStatus() {
        cond.lock()
        let path = config.statusFile
        cond.unlock()
        let entries = statusEntries()
        do {
            try StatusFile.write(path: path, entries: entries)
            lastStatusError = ""
        } catch {
            let msg = "cannot write status file \(path): \(error)"
            if msg != lastStatusError { log.error("\(msg)") }
            lastStatusError = msg
        }
    }

    // MARK: - Queries and commands (console)

    /// One entry per job, sorted by name.
    public func statusEntries(now: Date = Date()) -> [JobStatusEntry] {
        struct Snap { let job: JobState; let name: String; let schedule: Schedule; var status: String; let next: Date?; let tags: Set<String>; let failures: Int; let path: String; let problem: String?; var drill: Int? = nil; var drillRun = false; var lastError: String?; var node = "-" }
        cond.lock()
        let me = node
        let snaps = jobs.values.filter { !$0.removed }.map { j in
            var s = Snap(job: j, name: j.def.name, schedule: j.def.schedule, status: j.status, next: j.nextTime,
                         tags: j.nextTags, failures: j.failures, path: j.path, problem: j.setupProblem,
                         drill: j.def.drillInterval, drillRun: j.drillRun, lastError: j.failures > 0 ? j.lastError : nil)
            // A RADOS job: which node runs it (holds its lease) or ran it last.
            if j.def.store != nil {
                if j.status == JobStatusText.running {
                    s.node = me
                } else if let h = j.holder {
                    s.node = h
                    s.status = JobStatusText.running
                } else if let r = j.record {
                    s.node = r.node
                }
            }
            return s
        }
        cond.unlock()
        let entries = snaps.sorted { $0.name.unicodeScalars.lexicographicallyPrecedes($1.name.unicodeScalars) }.map { s in
            let waiting = s.status == JobStatusText.waiting || s.status == JobStatusText.retry || s.status == JobStatusText.queued
            let history = cache.history(jobPath: s.path)
            var e = JobStatusEntry.make(job: s.name, schedule: s.schedule, history: history,
                                        status: s.status, nextTime: waiting ? s.next : nil, nextTags: s.tags,
                                        failures: s.failures, now: now, problems: s.problem.map { [$0] } ?? [],
                                        since: JobStatusEntry.since(jobPath: s.path), lastError: s.lastError)
            e.node = s.node
            DrillSchedule.fill(&e, interval: s.drill, last: history.lastDrill, running: s.drillRun, now: now)
            return (s.job, e)
        }
        // Log each job's problems once when they change.
        cond.lock()
        var changed: [(String, String)] = []
        for (j, e) in entries where j.loggedProblems != e.problems {
            j.loggedProblems = e.problems
            changed.append((e.job, e.problems))
        }
        cond.unlock()
        for (name, p) in changed {
            if p == "-" { log.info("\(name): no problems any more") } else { log.warning("\(name): problems: \(p)") }
        }
        return entries.map { $0.1 }
    }

    /// What the scheduler is doing: running and queued runs, and its worker limit.
    public func load() -> (running: Int, queued: Int, workerLimit: Int) {
        cond.lock()
        defer { cond.unlock() }
        return (running, queue.count, config.workerLimit)
    }

    /// `run JOB`: runs a waiting job now.
    public func trigger(_ name: String) -> String {
        cond.lock()
        defer { cond.unlock() }
        guard let j = jobs[name], !j.removed else { return "Unknown job \(name)" }
        if !j.def.runs(on: node) {
            return "\(name) runs only on \((j.def.nodes ?? []).joined(separator: ", ")), not on this node (\(node))"
        }
        if j.isWaiting {
            j.triggered = true
            cond.broadcast()
            log.info("\(name): immediate run requested")
            return "Triggered immediate run for \(name)"
        }
        if j.status == JobStatusText.queued { return "\(name) is already queued for execution" }
        if j.status == JobStatusText.running { return "\(name) is already running" }
        return "\(name) cannot be run now (status: \(j.status.isEmpty ? "not started" : j.status))"
    }

    /// `runall`: runs every waiting job now.
    public func triggerAll() -> [String] {
        cond.lock()
        let names = jobs.values.filter { !$0.removed && $0.def.runs(on: node) }.map(\.def.name).sorted()
        cond.unlock()
        return names.map(trigger)
    }

    /// Re-reads the configuration file. Returns the message for the operator.
    public func reload() -> String {
        reloadMutex.lock()
        defer { reloadMutex.unlock() }
        cond.lock()
        let old = config
        cond.unlock()
        log.info("Reloading configuration from \(old.path)")
        let new: SchedulerConfig
        do {
            new = try SchedulerConfig.load(path: old.path)
        } catch {
            log.error("Reload failed, keeping the running configuration: \(error)")
            return "Reload failed, keeping the running configuration: \(error)"
        }
        if new.baseDir != old.baseDir {
            let msg = "Reload failed: global.base-dir changed from \(old.baseDir) to \(new.baseDir); restart the scheduler to change it"
            log.error("\(msg)")
            return msg
        }
        if new.telnetAddrs != old.telnetAddrs || new.telnetPort != old.telnetPort
            || new.consoleSocket != old.consoleSocket || new.consoleSocketGroup != old.consoleSocketGroup {
            log.warning("telnet-addrs, telnet-port and console-socket changes take effect when the scheduler is restarted")
        }
        if new.cluster != old.cluster {
            log.warning("lease and node-name changes take effect when the scheduler is restarted")
        }
        if new.nbd != old.nbd {
            log.warning("nbd-server changes take effect when the scheduler is restarted (its exports follow the jobs at once)")
        }
        cond.lock()
        var current: [String: JobDefinition] = [:]
        for j in jobs.values where !j.removed { current[j.def.name] = j.pending ?? j.def }
        cond.unlock()
        let newJobs = visible(new.jobs)
        let added = newJobs.filter { current[$0.name] == nil }
        let changed = newJobs.filter { current[$0.name] != nil && current[$0.name]! != $0 }
        let newNames = Set(newJobs.map(\.name))
        let removed = current.keys.filter { !newNames.contains($0) }.sorted()
        var setup: [String: String] = [:]
        for def in added + changed { setup[def.name] = prepareOrExplain(def, baseDir: new.baseDir) }
        var histories: [String: JobHistory] = [:]
        for def in added + changed { histories[def.name] = cache.history(jobPath: new.baseDir + "/" + def.name) }
        let now = Date()
        cond.lock()
        config = new
        for name in removed {
            guard let j = jobs[name] else { continue }
            if j.status == JobStatusText.running {
                j.removed = true
                log.info("\(name): removed from the configuration; the running backup finishes first")
            } else {
                jobs[name] = nil
                queue.removeAll { $0 === j }
                cache.invalidate(jobPath: j.path)
                log.info("\(name): removed from the configuration")
            }
        }
        for def in added {
            if let j = jobs[def.name], j.removed {
                // Removed and added again while its backup still runs.
                j.removed = false
                j.pending = def
                log.info("\(def.name): added to the configuration again")
                continue
            }
            let j = JobState(def: def, baseDir: new.baseDir)
            j.setupProblem = setup[def.name] ?? nil
            jobs[def.name] = j
            log.info("\(def.name): added to the configuration")
            log.info("\(def.name): started task generator loop")
            plan(j, history: histories[def.name] ?? JobHistory(), now: now)
        }
        for def in changed {
            guard let j = jobs[def.name] else { continue }
            log.info("\(def.name): configuration changed")
            j.setupProblem = setup[def.name] ?? nil
            if j.status == JobStatusText.running {
                j.pending = def
            } else {
                j.def = def
                j.spread = def.spread
                j.failures = 0
                j.pending = nil
                if j.status == JobStatusText.queued { continue }
                plan(j, history: histories[def.name] ?? JobHistory(), now: now)
            }
        }
        cond.broadcast()
        cond.unlock()
        wakeStatusWriter()
        for s in services { s.reload(new) }
        let msg = "Reloaded \(new.path): \(new.jobs.count) jobs (\(added.count) added, \(changed.count) changed, \(removed.count) removed)"
        log.info("\(msg)")
        return msg
    }
}

/// Signals arrive through a self-pipe: the handler writes the signal number, the
/// signal thread reads it. Works whichever thread the kernel picks.
enum SignalPipe {
    // nonisolated(unsafe): set once by install(), before the handlers are installed and the signal thread starts; only read after.
    nonisolated(unsafe) static var readFD: Int32 = -1
    nonisolated(unsafe) static var writeFD: Int32 = -1

    static func install() {
        if readFD >= 0 { return }
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        readFD = fds[0]
        writeFD = fds[1]
        for s in [SIGHUP, SIGINT, SIGTERM, SIGQUIT] {
            signal(s) { sig in
                var b = UInt8(truncatingIfNeeded: sig)
                _ = write(SignalPipe.writeFD, &b, 1)
            }
        }
        signal(SIGPIPE, SIG_IGN)
    }

    /// Blocks until the next signal; nil if the pipe is gone.
    static func next() -> Int32? {
        var b: UInt8 = 0
        while true {
            let n = read(readFD, &b, 1)
            if n == 1 { return Int32(b) }
            if n < 0 && errno == EINTR { continue }
            return nil
        }
    }
}
