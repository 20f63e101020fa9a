// StoreCommands: `backy copy --to STORE` (a job's revisions and chunks into
// another store) and `backy set-store STORE` (switch the job to that copy).
import ArgumentParser
import ChunkStore
import Foundation
import Presentation
import SourcesPlugins

struct CopyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy",
        abstract: "Copy revisions and their chunks to another store (a Ceph RADOS namespace or a directory).",
        discussion: """
            STORE is rados:POOL[/NAMESPACE] (namespace default: the job directory's base name) or a directory \
            (created as a job directory with the job's source if it does not exist). Copies every complete \
            revision (or the one -r names) the target lacks, oldest first, keeping ids, timestamps, tags and \
            trust; every chunk written is read back and its hash checked before the revision's map and metadata \
            are written. Resumable (run it again after an interruption) and idempotent (a second run copies \
            nothing; a target revision whose map is missing or damaged is written again). Refuses revisions \
            written by backy 2.x (run `backy upgrade` first), the job's own store, a directory inside a job \
            directory or holding the job's, a non-empty directory that is no backy job, and a target whose job \
            has another source unless --force. Prints one line per revision copied; \
            exit 0 when done.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: .customLong("to"), help: ArgumentHelp("The target store: rados:POOL[/NAMESPACE] or a directory.", valueName: "STORE"))
    var to: String
    @Option(name: [.customShort("r"), .customLong("revision")], help: "Revision spec (default: every complete revision).")
    var revision: String?
    @Flag(name: [.customShort("f"), .customLong("force")], help: "Copy into a target whose job has another source (and make this job's source its source).")
    var force = false

    func run() throws {
        try Operation.run(global) { log in
            let job = try Operation.openJob(global, log: log)
            let spec = try Copier.TargetSpec(to, job: job)
            let selected = try Copier.select(job: job, spec: revision)
            let target = try Copier.openTarget(spec, for: job, create: true, force: force)
            let copier = Copier(job: job, target: target, log: log, options: BackyEnvironment.dataPath)
            copier.say = { Operation.say(global, $0) }
            copier.progress = Operation.progress(global, log: log)
            let r = try copier.run(selected)
            Operation.say(global, "Copied \(Counted.text(r.copied.count, "revision")) to \(target.location): \(Counted.text(r.chunksWritten, "chunk")) written and read back (\(ByteFormat.flexible(r.bytesWritten))), \(r.chunksPresent) there already; \(r.present) revisions there already")
            return 0
        }
    }
}

struct SetStoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-store",
        abstract: "Switch the job to another store that holds a copy of its history (made by `backy copy`).",
        discussion: """
            STORE is rados:POOL[/NAMESPACE], or the job directory itself (a RADOS job becomes a directory job \
            again after `backy copy --to DIR` into its own directory). Rewrites only the job's local config \
            (keeping its ceph-conf, client-id and lock-duration for a RADOS store); the old store is left as it \
            is. Refuses if the target lacks complete revisions the job has, unless --force, and while a backup \
            of the job runs. With the scheduler, set `store:` for the job in backy.conf as well (the scheduler \
            writes a job's local config from backy.conf).
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: ArgumentHelp("The new store: rados:POOL[/NAMESPACE] or the job directory.", valueName: "STORE"))
    var store: String
    @Flag(name: [.customShort("f"), .customLong("force")], help: "Switch even if the target lacks revisions the job has (they stay in the old store).")
    var force = false

    func run() throws {
        try Operation.run(global) { log in
            let job = try Operation.openJob(global, log: log)
            let r = try StoreSwitch.run(job: job, to: store, force: force, log: log)
            if r.unchanged {
                Operation.say(global, "Job \(job.path) already uses \(r.to); nothing changed")
                return 0
            }
            var line = "Switched job \(job.path) from \(r.from) to \(r.to) (\(Counted.text(r.revisionsThere, "revision")) of the job there"
            if !r.missing.isEmpty { line += "; \(r.missing.count) not there, left in \(r.from)" }
            line += "); \(r.from) is left as it is"
            Operation.say(global, line)
            return 0
        }
    }
}
