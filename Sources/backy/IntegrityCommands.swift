// IntegrityCommands: distrust, verify, purge and forget.
import ArgumentParser
import ChunkStore
import Foundation
import Presentation
import SourcesPlugins

struct DistrustCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distrust",
        abstract: "Mark revisions distrusted: the next backups rewrite every chunk and verify them.",
        discussion: "With -r one revision; otherwise every complete revision, optionally only those from -f to -u (UTC dates, inclusive).")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("r"), .customLong("revision")], help: "Revision spec (default: all complete revisions).")
    var revision: String?
    @Option(name: [.customShort("f"), .customLong("from")], help: ArgumentHelp("First day (YYYY-MM-DD, UTC).", valueName: "DATE"))
    var from: String?
    @Option(name: [.customShort("u"), .customLong("until")], help: ArgumentHelp("Last day (YYYY-MM-DD, UTC).", valueName: "DATE"))
    var until: String?

    func validate() throws {
        for d in [from, until].compactMap({ $0 }) where Timestamp.parseDay(d) == nil {
            throw ValidationError("Not a valid date: '\(d)'.")
        }
    }

    func run() throws {
        try Operation.run(global) { log in
            let job = try Operation.openJob(global, log: log)
            let ids = try Integrity.distrust(job: job, spec: revision, from: from.flatMap(Timestamp.parseDay),
                                             until: until.flatMap(Timestamp.parseDay), log: log)
            if ids.isEmpty { log.info("No revision matched.") }
            return 0
        }
    }
}

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Read chunks back and check their hashes; mark revisions verified, quarantine bad chunks.",
        discussion: """
            With -r: every chunk of that revision not covered by a verified revision. Without: every distrusted \
            revision, oldest first. With --sample: the least recently verified PERCENT of the job's chunks, within \
            --budget seconds. Bad chunks are moved to quarantine/ with a report, every revision using them is \
            distrusted, and verify exits 1 with one line per bad chunk.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("r"), .customLong("revision")], help: "Revision spec.")
    var revision: String?
    @Option(name: .customLong("sample"), help: ArgumentHelp("Verify this share of the job's chunks, least recently verified first.", valueName: "PERCENT"))
    var sample: Double?
    @Option(name: .customLong("budget"), help: ArgumentHelp("Stop sampling after this many seconds.", valueName: "SECONDS"))
    var budget: Double?

    func validate() throws {
        if let s = sample, !(s > 0 && s <= 100) { throw ValidationError("--sample must be in (0, 100]") }
        if let b = budget, !(b > 0) { throw ValidationError("--budget must be positive") }
        if sample != nil && revision != nil { throw ValidationError("use either -r or --sample") }
    }

    func run() throws {
        try Operation.run(global) { log in
            let job = try Operation.openJob(global, log: log)
            guard let bad = try Integrity.exclusively(job, {
                try Integrity.verify(job: job, spec: revision, sample: sample, budget: budget,
                                     options: BackyEnvironment.dataPath, log: log,
                                     progress: Operation.progress(global, log: log))
            }) else {
                print("Failed to get exclusive lock for 'verify'. Continuing.")
                return 0
            }
            for b in bad {
                Operation.printError("bad chunk \(b.name): \(b.fault) (used by \(b.revisions.joined(separator: ", ")))")
            }
            return bad.isEmpty ? 0 : 1
        }
    }
}

struct PurgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purge",
        abstract: "Remove chunks that no revision uses.",
        discussion: "Safe while backups, restores and NBD sessions of the job run: it never removes a chunk one of them uses, and does not wait for them. Prints `Purging: N chunks` (backy 2.4's line) on stdout and logs the bytes freed. --dry-run prints what it would remove and how many bytes, and changes nothing (no lock file, no log line in the job directory).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .customLong("dry-run"), help: "Say which chunks would go and how many bytes that frees; change nothing.")
    var dryRun = false

    func run() throws {
        try Operation.run(global) { log in
            if dryRun {
                let job = try Operation.openJob(global, log: log, jobLog: false)
                let r = try Purger(job: job, log: log).preview()
                print("Would purge \(StatusReport.count(r.removedChunks, "chunk")) (\(ByteFormat.flexible(r.freedBytes)), \(r.freedBytes) bytes); \(r.keptChunks) in use stay")
                return 0
            }
            let job = try Operation.openJob(global, log: log)
            guard let r = try Integrity.exclusively(job, { try Purger(job: job, log: log).run() }) else {
                Operation.say(global, "Failed to get exclusive lock for 'purge'. Continuing.")
                return 0
            }
            // backy 2.4's result line on stdout; the details in the log, so
            // that nothing is said twice.
            log.info("Freed \(ByteFormat.flexible(r.freedBytes)); kept \(r.keptChunks) chunks in use; removed \(r.removedTempFiles) temp files of \(r.deadSessions) dead sessions")
            Operation.say(global, "Purging: \(r.removedChunks) chunks")
            return 0
        }
    }
}

struct ForgetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget",
        abstract: "Remove one revision (its chunks go at the next purge).",
        discussion: "--dry-run names the revision and what removing it would free (its own files now, the chunks only it uses at the next purge), and changes nothing.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("r"), .customLong("revision")], help: "Revision spec.")
    var revision: String
    @Flag(name: .customLong("dry-run"), help: "Say what would be removed and how many bytes that frees; change nothing.")
    var dryRun = false

    func run() throws {
        try Operation.run(global) { log in
            if dryRun {
                let job = try Operation.openJob(global, log: log, jobLog: false)
                let (rev, p) = try Integrity.forgetPreview(job: job, spec: revision)
                print("Would forget revision \(rev.id) from \(Timestamp.formatSeconds(rev.timestamp)) UTC [\(rev.sortedTags.joined(separator: ","))]\(rev.isComplete ? "" : " (incomplete)"): \(ByteFormat.flexible(p.fileBytes)) of revision files now, \(StatusReport.count(p.chunks, "chunk")) only it uses (\(ByteFormat.flexible(p.chunkBytes))) at the next purge; \(p.totalBytes) bytes in all")
                return 0
            }
            let job = try Operation.openJob(global, log: log)
            let rev = try Integrity.forget(job: job, spec: revision, log: log)
            let line = "Forgot revision \(rev.id) [\(rev.sortedTags.joined(separator: ","))]"
            Operation.logToFileOnly(log, .info, line)
            Operation.say(global, line)
            return 0
        }
    }
}

struct UpgradeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upgrade",
        abstract: "Convert revisions written by backy 2.x to this version's format.",
        discussion: "Newest first; keeps ids, timestamps, tags and trust. Resumable: run it again after an interruption. Old chunks no longer used go at the next purge.")
    @OptionGroup var global: GlobalOptions

    func run() throws {
        try Operation.run(global) { log in
            let job = try Operation.openJob(global, log: log)
            try Integrity.upgrade(job: job, options: BackyEnvironment.dataPath, log: log,
                                  progress: Operation.progress(global, log: log)) { Operation.say(global, $0) }
            return 0
        }
    }
}
