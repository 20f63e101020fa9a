// Commands: the job subcommands of `backy` (init, backup, restore, find,
// status). Each parses its arguments, calls the libraries, and prints.
import ArgumentParser
import ChunkStore
import Foundation
import Presentation
import SourcesPlugins

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create a job directory and write its config.",
        discussion: "TYPE is `file` (SOURCE = an existing image file or block device, stored as an absolute path; FIFOs and other unseekable files are refused) or `ceph-rbd` (SOURCE = POOL/IMAGE). A new job directory is created with mode 0700 (0750 with --group-access). Refuses to overwrite an existing config. With --store rados:POOL[/NAMESPACE] the job's history lives in that Ceph RADOS namespace (default: the job directory's base name; the cluster is found through CEPH_CONF and CEPH_ARGS) and the local config only names the store; if the namespace already holds a job, the directory attaches to it (refused if its source differs, unless --force makes SOURCE the job's source).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .customLong("group-access"), help: "Create the job directory 0750 (its group may read the backups) instead of 0700.")
    var groupAccess = false
    @Option(name: .customLong("store"), help: ArgumentHelp("Keep the job's history in Ceph RADOS: rados:POOL[/NAMESPACE].", valueName: "STORE"))
    var store: String?
    @Flag(name: [.customShort("f"), .customLong("force")], help: "With --store: attach to the namespace's job even if its source differs, and make SOURCE its source.")
    var force = false
    @Argument(help: "Source type: file or ceph-rbd.") var type: String
    @Argument(help: "The file name, or POOL/IMAGE.") var source: String

    func run() throws {
        try Operation.run(global) { log in
            try Job.refuseExistingConfig(path: global.jobDir)
            let cfg = try SourceFactory.initConfig(type: type, spec: source)
            if let store {
                let name = (global.jobDir as NSString).standardizingPath
                let spec = try RadosStoreSpec.parse(store, defaultNamespace: (name as NSString).lastPathComponent)
                let (job, outcome) = try Job.initialize(path: global.jobDir, source: cfg, store: spec, force: force,
                                                        groupAccess: groupAccess, logger: log)
                switch outcome {
                case .created: log.info("Initialized job \(job.path) with a \(type) source in \(spec)")
                case .attached: log.info("Attached job \(job.path) to the job in \(spec)")
                case .attachedReplacingSource(let was):
                    log.warning("Attached job \(job.path) to the job in \(spec) and replaced its source \(was)")
                }
                return 0
            }
            if force { throw BackyError(.usage, "--force applies only with --store") }
            let job = try Job.initialize(path: global.jobDir, source: cfg, groupAccess: groupAccess, logger: log)
            log.info("Initialized job \(job.path) with a \(type) source")
            return 0
        }
    }
}

struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Back up the job's source into a new revision and verify it.",
        discussion: "Removes incomplete revisions first. Exits 1 if the backup or its verification fails; the failed revision is removed. With --json, prints one JSON object on stdout at the end: {id, parent, tags, trust, timestamp, duration, bytes_written, bytes_stored, stats} (log lines stay on stderr).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .customLong("json"), help: "Print the new revision as one JSON object on stdout when the backup is done.")
    var json = false
    @Option(name: .customLong("lease-fd"), help: ArgumentHelp("(Used by the scheduler) a pipe on which the scheduler tells until when it holds the job's lease; a RADOS job's map and revision are written only while a third of the lease is left.", valueName: "FD"))
    var leaseFD: Int32?
    @Argument(help: "Comma-separated tags for the new revision, e.g. daily,weekly.") var tags: String

    func run() throws {
        try Operation.run(global) { log in
            if let fd = leaseFD {
                guard fd > 2, fcntl(fd, F_GETFD) >= 0 else { throw BackyError(.usage, "--lease-fd \(fd): not an open file descriptor above 2") }
                LeaseFence.install(fd: fd) {
                    // The scheduler that holds the lease is gone (killed): stop
                    // before anything is committed; the lease lapses and
                    // another node runs the job (its incomplete revision is
                    // removed by the next backup).
                    Operation.printError("the scheduler that runs this backup is gone; stopping (nothing was committed)")
                    _exit(75)
                }
            }
            let job = try Operation.openJob(global, log: log)
            let set = Set(tags.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
            let result = try BackupRun.run(job: job, tags: set, options: BackyEnvironment.dataPath,
                                           sourceOptions: BackyEnvironment.sources, log: log,
                                           progress: Operation.progress(global, log: log))
            if json {
                var doc = StatusReport.jsonObject(result.revision)
                doc["id"] = result.revision.id
                doc["job"] = job.path
                print(try StatusReport.render(doc))
            }
            return 0
        }
    }
}

struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Write a revision's image to a file, a block device or stdout (-).",
        discussion: "Regular files are written sparse; the target is never read. Every chunk's hash is checked; a bad chunk stops the restore (exit 1) and names the image offset. Refuses (exit 1) a target inside a job directory (also through symlinks such as `last`) or the job's own source, and an existing non-empty regular file unless --force is given; block devices and - are written as they are.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("r"), .customLong("revision")], help: "Revision spec: number from newest, id, tag, last/latest.")
    var revision: String = "latest"
    @Flag(name: .customLong("best-effort"), help: "Fill unreadable chunks with zeros, go on, write a damage report (JSON) and exit 2.")
    var bestEffort = false
    @Option(name: .customLong("damage-report"), help: ArgumentHelp("Where --best-effort writes its report (default: restore-damage-<rev>-<time>.json in the job directory).", valueName: "FILE"))
    var damageReport: String?
    @Flag(name: [.customShort("f"), .customLong("force")], help: "Overwrite an existing non-empty regular file.")
    var force = false
    @Argument(help: "Target file or block device, or - for stdout.") var target: String

    func run() throws {
        try Operation.run(global) { log in
            let job = try Operation.openJob(global, log: log)
            if let p = damageReport { try RestoreRun.policy(job: job, force: force).checkReport(path: p) }
            let outcome = try RestoreRun.run(job: job, spec: revision, target: target == "-" ? .stdout : .path(target),
                                             bestEffort: bestEffort, force: force, options: BackyEnvironment.dataPath, log: log,
                                             progress: Operation.progress(global, log: log))
            let damage = outcome.damage
            if !damage.isEmpty {
                // Name the revision that was restored (the spec may mean
                // another one by now, e.g. `latest` after a new backup).
                let path = try RestoreRun.writeDamageReport(job: job, revision: outcome.revision.id, target: target, damage: damage, path: damageReport)
                let bytes = damage.reduce(0) { $0 + $1.length }
                log.error("Restored with damage: \(damage.count) chunk(s), \(bytes) bytes filled with zeros; report: \(path)")
                Operation.printError("restore incomplete: \(damage.count) unreadable chunk(s) filled with zeros; damage report: \(path)")
                return 2
            }
            return 0
        }
    }
}

struct FindCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "find",
        abstract: "Print the path of a revision's map file.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("r"), .customLong("revision")], help: "Revision spec: number from newest, id, tag, last/latest.")
    var revision: String = "latest"

    func run() throws {
        try Operation.run(global, quiet: true) { log in
            let job = try Operation.openJob(global, log: log, jobLog: false)
            let rev = try job.find(revision)
            print(job.dataLocation(rev))
            return 0
        }
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the job's revisions and its store.",
        discussion: "The table: date, id, image size, bytes the backup added to the store, duration, tags, trust (`incomplete` for an interrupted or running backup, `damaged` for a revision whose map is missing or damaged); then the store: chunks, bytes stored, disk use of the job directory, verification coverage. --json prints one object: {job, revisions: [...], store: {chunks, stored_bytes, disk_bytes, verification: {...}}}.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .customLong("json"), help: "Print the job, its revisions and its store as one JSON object.") var json = false

    func run() throws {
        try Operation.run(global, quiet: true) { log in
            let job = try Operation.openJob(global, log: log, jobLog: false)
            let revs = try job.scan()
            let flags = StatusReport.Flags(job: job, revisions: revs)
            let usage = try StoreUsage.measure(job)
            if json {
                print(try StatusReport.json(job: job.path, revs, flags: flags, store: usage))
            } else {
                print(StatusReport.table(revs, flags: flags))
                print(StatusReport.coverageLine(chunks: usage.chunks, neverVerified: usage.neverVerified, oldest: usage.oldestVerified,
                                                quarantined: usage.quarantined,
                                                legacyRevisions: revs.filter { $0.isComplete && $0.backend != .native }.count,
                                                stored: usage.storedBytes, disk: usage.diskBytes))
                for line in flags.lines(revs) { print(line) }
            }
            return 0
        }
    }
}
