// SchedulerCommands: `backy scheduler [-c CONFIG]` (the daemon, in the
// foreground) and `backy check [-c CONFIG]` (Nagios check of its status file).
// All logic lives in the Scheduler library.
import ArgumentParser
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

    func run() throws {
        try Operation.run(global) { log in
            let cfg = try SchedulerConfig.load(path: config)
            let daemon = SchedulerDaemon(config: cfg, log: log)
            daemon.services = [NBDInScheduler(log: log)]
            return try daemon.run()
        }
    }
}

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check the scheduler's status file (Nagios plugin).",
        discussion: "Prints one status line (with perfdata after ' | ') and exits 0 (OK: every job within its SLA), 1 (WARNING: a job's last restore drill is older than twice its interval or could not run), 2 (CRITICAL: jobs out of SLA, a job's last restore drill failed, or the status file is older than 5 minutes) or 3 (UNKNOWN: no status file). A missing or bad configuration exits 1.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("c"), .customLong("config")], help: ArgumentHelp("The configuration file.", valueName: "CONFIG"))
    var config: String = SchedulerConfig.defaultPath

    func run() throws {
        let cfg: SchedulerConfig
        do {
            cfg = try SchedulerConfig.loadGlobal(path: config)
        } catch {
            Operation.printError("\(error)")
            throw ExitCode(1)
        }
        let result = Check.run(statusFile: cfg.statusFile)
        FileHandle.standardOutput.write(Data(result.output.utf8))
        if result.code != 0 { throw ExitCode(result.code) }
    }
}
