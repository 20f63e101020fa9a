// ExpireCommand: `backy expire [-c CONFIG] JOB [--dry-run]`: the scheduler's
// expiry for one job, by hand: revisions lose the schedule tags their
// schedule no longer needs, revisions left without tags go (their chunks at
// the next purge). --dry-run says the same and changes nothing.
import ArgumentParser
import ChunkStore
import Foundation
import Presentation
import Scheduler

struct ExpireCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "expire",
        abstract: "Expire one job's old revisions by its schedule, as the scheduler does after each run.",
        discussion: "A revision loses a schedule tag when it is neither among the newest `keep` revisions with that tag nor younger than keep × interval; a revision left without tags is removed (its chunks go at the next purge). Tags given by hand never expire. Skipped (exit 0, one line) while a backup of the job runs. --dry-run prints which revisions would lose which tags or go, and how many bytes that frees, and changes nothing.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("c"), .customLong("config")], help: ArgumentHelp("The configuration file with the job and its schedule.", valueName: "CONFIG"))
    var config: String = SchedulerConfig.defaultPath
    @Flag(name: .customLong("dry-run"), help: "Say what would change and how many bytes that frees; change nothing.")
    var dryRun = false
    @Argument(help: ArgumentHelp("The job's name in the configuration.", valueName: "JOB"))
    var job: String

    func run() throws {
        try Operation.run(global) { log in
            let cfg: SchedulerConfig
            do {
                cfg = try SchedulerConfig.load(path: config)
            } catch {
                throw BackyError(.usage, "\(error)")
            }
            guard let def = cfg.jobs.first(where: { $0.name == job }) else {
                throw BackyError(.usage, "\(cfg.path) has no job '\(job)'")
            }
            let path = cfg.baseDir + "/" + def.name
            var g = global
            g.backupdir = path
            let (outcome, revisions, frees) = try Expiry.preview(jobPath: path, schedule: def.schedule, log: log)
            let byID = Dictionary(revisions.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            let verb = dryRun ? "would " : ""
            var lines: [String] = []
            let removed = Set(outcome.removed)
            for (id, lost) in outcome.lostTags.sorted(by: { (byID[$0.key]?.timestamp ?? .distantPast, $0.key) < (byID[$1.key]?.timestamp ?? .distantPast, $1.key) }) {
                let when = byID[id].map { Timestamp.formatSeconds($0.timestamp) + " UTC" } ?? "?"
                let tags = def.schedule.sortedTags(lost).joined(separator: ",")
                if removed.contains(id) {
                    lines.append("Revision \(id) (\(when)) \(verb)\(dryRun ? "lose" : "loses") [\(tags)] and \(dryRun ? "be removed" : "is removed")")
                } else {
                    lines.append("Revision \(id) (\(when)) \(verb)\(dryRun ? "lose" : "loses") [\(tags)]")
                }
            }
            let summary = "\(job): \(StatusReport.count(outcome.lostTags.count - outcome.removed.count, "revision")) \(dryRun ? "would lose" : "lose") tags, \(StatusReport.count(outcome.removed.count, "revision")) \(dryRun ? "would be" : "are") removed, freeing \(ByteFormat.flexible(frees.totalBytes)) (\(frees.totalBytes) bytes; chunks at the next purge)"
            if dryRun {
                for l in lines { print(l) }
                print(summary)
                return 0
            }
            _ = try Operation.openJob(g, log: log)
            guard try Expiry.run(jobPath: path, jobName: def.name, schedule: def.schedule, log: log) != nil else {
                Operation.say(global, "\(job): not expiring now: a backup is running")
                return 0
            }
            Operation.say(global, summary)
            return 0
        }
    }
}
