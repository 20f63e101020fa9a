// DrillCommand: `backy drill`: a restore drill of one revision (the Mount
// library's Drill): the partition table, then each filesystem's read-only
// checker; the result is recorded in the job's drill.json and printed.
import ArgumentParser
import ChunkStore
import Foundation
import Mount

struct DrillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drill",
        abstract: "Check that a revision holds sound filesystems (a restore drill).",
        discussion: """
            Mounts the revision privately, reads its partition table, and runs each filesystem's \
            read-only checker on its partition (e2fsck -fn for ext2/3/4, xfs_repair -n for XFS, \
            fsck.vfat -n for FAT) within --time-limit for the whole drill. A partition meant for a \
            filesystem (Linux, Microsoft basic data, EFI) that holds none fails; LVM, LUKS and swap \
            are skipped. The result is recorded in the job (drill.json: in the job directory, or in the RADOS store) and printed. \
            Exit 0 every filesystem clean, 1 a filesystem or the partition table failed, 2 the \
            drill could not run (unknown revision, a checker that could not finish, nothing to check).
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("c"), .customLong("config")], help: ArgumentHelp("Take the job from this configuration file; JOB then comes first.", valueName: "CONFIG"))
    var config: String?
    @Option(name: [.customShort("r"), .customLong("revision")], help: "Revision spec: number from newest, id, tag, last/latest.")
    var revision = "latest"
    @Flag(name: .customLong("json"), help: "Print the result as JSON (the same document as drill.json).")
    var json = false
    @Option(name: .customLong("time-limit"), help: ArgumentHelp("Seconds for the whole drill; a checker still running then is killed.", valueName: "SECONDS"))
    var timeLimit: Double = Drill.defaultTimeLimit
    @Argument(help: ArgumentHelp("JOB (only with -c).", valueName: "JOB"))
    var args: [String] = []

    func validate() throws {
        guard timeLimit > 0 else { throw ValidationError("--time-limit must be positive") }
        try JobSelection.check(args, config: config, required: 0, optional: 0, what: "")
    }

    func run() throws {
        try Operation.run(global) { log in
            let job: Job
            do {
                let (g, _) = try JobSelection.resolve(global, config: config, args)
                job = try Operation.openJob(g, log: log)
                _ = try job.findComplete(revision)
            } catch let e as BackyError {
                // Could not run at all: exit 2.
                throw BackyError(e.kind, e.message, exitCode: 2)
            }
            let r = Drill.run(job: job, spec: revision, timeLimit: timeLimit, log: log)
            do {
                try Drill.record(r, job: job)
            } catch {
                log.error("cannot record the drill in \(job.backend.location(of: .drillRecord)): \(error)")
            }
            log.info("Drill of revision \(r.revision ?? "?"): \(r.verdict)\(r.failedNames.isEmpty ? "" : " (\(r.failedNames.joined(separator: ", ")))")")
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try enc.encode(r), as: UTF8.self))
            } else {
                print(Drill.describe(r).joined(separator: "\n"))
            }
            return r.exitCode
        }
    }
}
