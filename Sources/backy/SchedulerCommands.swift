// SchedulerCommands: `backy scheduler [-c CONFIG]` (the daemon, in the
// foreground), `backy check [-c CONFIG]` (Nagios check of its status file),
// `backy check-config [-c CONFIG]` and `backy metrics [-c CONFIG] [--textfile PATH]`.
// All logic lives in the Scheduler library.
import ArgumentParser
import BackyMetrics
import ChunkStore
import Foundation
import Scheduler

struct SchedulerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler",
        abstract: "Run the scheduler daemon in the foreground.",
        discussion: "Backs up every job of CONFIG on its schedule, expires old revisions, writes the status file and serves the telnet console (and, with nbd-server: {in-scheduler: true}, every job over NBD). SIGHUP reloads the configuration; SIGTERM or SIGINT stop it (running backups are stopped and cleaned up by the next run). Exits 69 if another scheduler holds <base-dir>/.lock, 1 for a bad configuration.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("c"), .customLong("config")], help: ArgumentHelp("The configuration file.", valueName: "CONFIG"))
    var config: String = SchedulerConfig.defaultPath
    @Option(name: .customLong("node"), help: ArgumentHelp("This scheduler's node name among several sharing RADOS jobs (default: the configuration's node-name, else the host name).", valueName: "NAME"))
    var node: String?

    func run() throws {
        try Operation.run(global) { log in
            if let node, let why = ClusterSettings.invalidNodeName(node) { throw BackyError(.usage, "--node \(node): \(why)") }
            let cfg = try SchedulerConfig.load(path: config)
            let daemon = SchedulerDaemon(config: cfg, command: SchedulerDaemon.resolveCommand(
                given: BackyEnvironment.backyCommand, searchPath: BackyEnvironment.searchPath), log: log, node: node)
            daemon.services = [NBDInScheduler(log: log), MetricsService(daemon: daemon, log: log)]
            return try daemon.run()
        }
    }
}

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check the scheduler's status file (Nagios plugin).",
        discussion: """
            Prints one status line (with perfdata after ' | ') and one line per job at fault. \
            Exit 0 OK; 1 WARNING: a job failed failures-warning (3) runs in a row, a restore drill is \
            late or could not run, the configuration has an error the scheduler would refuse, or a \
            scheduler sharing the RADOS jobs has not written its heartbeat for 3 leases (or the \
            heartbeats cannot be read); \
            2 CRITICAL: a job out of its SLA (also one that never succeeded within it), with problems, \
            whose last drill failed, that failed failures-critical (6) runs in a row, or missing from \
            the status file, or the status file is older than 5 minutes or dated in the future; \
            3 UNKNOWN: no or an unreadable configuration or status file, or an empty status file \
            while jobs are configured.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("c"), .customLong("config")], help: ArgumentHelp("The configuration file.", valueName: "CONFIG"))
    var config: String = SchedulerConfig.defaultPath
    @Option(name: .customLong("node"), help: ArgumentHelp("This node's name (default: the configuration's node-name, else the host name): directory jobs limited to other nodes are not expected in the status file.", valueName: "NAME"))
    var node: String?

    func run() throws {
        if let node, let why = ClusterSettings.invalidNodeName(node) {
            FileHandle.standardOutput.write(Data("UNKNOWN: --node \(node): \(why)\n".utf8))
            throw ExitCode(3)
        }
        let result = Check.run(config: config, node: node)
        FileHandle.standardOutput.write(Data(result.output.utf8))
        if result.code != 0 { throw ExitCode(result.code) }
    }
}

struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Check a configuration file: every error and every unknown key, with its line.",
        discussion: "Prints each error as `Error: FILE: line N: KEY: what` and each unknown key as `Warning: …` on stderr, then a summary on stdout. Exit 0 when the scheduler would accept the file (warnings allowed), 1 on errors. The systemd unit runs it before starting and reloading the scheduler.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("c"), .customLong("config")], help: ArgumentHelp("The configuration file.", valueName: "CONFIG"))
    var config: String = SchedulerConfig.defaultPath

    func run() throws {
        let r = SchedulerConfig.check(path: config)
        for e in r.errors { FileHandle.standardError.write(Data("Error: \(e.message)\n".utf8)) }
        for w in r.warnings { FileHandle.standardError.write(Data("Warning: \(w.message)\n".utf8)) }
        let name = r.partial?.path ?? config
        if let c = r.config, r.errors.isEmpty {
            Operation.say(global, "\(name): OK: \(c.jobs.count) job\(c.jobs.count == 1 ? "" : "s"), \(c.schedules.count) schedule\(c.schedules.count == 1 ? "" : "s")\(r.warnings.isEmpty ? "" : ", \(r.warnings.count) warning\(r.warnings.count == 1 ? "" : "s")")")
            return
        }
        Operation.say(global, "\(name): \(r.errors.count) error\(r.errors.count == 1 ? "" : "s")\(r.warnings.isEmpty ? "" : ", \(r.warnings.count) warning\(r.warnings.count == 1 ? "" : "s")"); the scheduler refuses it")
        throw ExitCode(1)
    }
}

struct MetricsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Print the Prometheus metrics of every job, or write them for node_exporter's textfile collector.",
        discussion: "The same metrics the scheduler serves on /metrics (with metrics-addrs or metrics-port set), built from the status file and the job directories: per job (label job) the last success time, last duration, consecutive failures, revisions, bytes stored, SLA state, verification, drills; per scheduler running and queued runs and the worker limit. --textfile writes them atomically (temp file and rename in the same directory).")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("c"), .customLong("config")], help: ArgumentHelp("The configuration file.", valueName: "CONFIG"))
    var config: String = SchedulerConfig.defaultPath
    @Option(name: .customLong("textfile"), help: ArgumentHelp("Write to this file (e.g. /var/lib/prometheus/node-exporter/backy.prom) instead of stdout.", valueName: "PATH"))
    var textfile: String?

    func run() throws {
        try Operation.run(global, quiet: true) { log in
            let cfg: SchedulerConfig
            do {
                cfg = try SchedulerConfig.load(path: config)
            } catch {
                throw BackyError(.usage, "\(error)")
            }
            let text = try MetricsFiles.snapshot(config: cfg, log: log).render()
            if let textfile {
                try MetricsFiles.writeTextfile(textfile, text)
            } else {
                FileHandle.standardOutput.write(Data(text.utf8))
            }
            return 0
        }
    }
}
