// Fuzz target revision: a revision file `<id>.rev` (YAML), read as every
// command and the scheduler read it: Job.scanReport (id checks, Revision.load
// with its size limit and YAML screening), the scheduler's JobHistory and
// status line, revision specs, the schedule's
// next run, SLA and expiry over it. A revision that loads must also survive
// being written back (trust changes and expiry rewrite `.rev` files): its
// YAML must parse to the same revision.
import ChunkStore
import Foundation
import FuzzSupport
import Scheduler

enum Target {
    static let path = DirectoryBackend.path(of: .revision(Fuzz.revisionID), jobPath: Fuzz.job.path)
    static let schedule = try! Schedule(["daily": ScheduleTag(interval: 86400, keep: 9),
                                         "weekly": ScheduleTag(interval: 7 * 86400, keep: 5)])
    static let now = Date(timeIntervalSince1970: 1_800_000_000)
}

func use(_ revs: [Revision]) {
    // (`status` as text and JSON is rendered by the CLI, which a fuzz
    // package cannot import since StatusReport moved there.)
    for spec in ["0", "1", "last", "latest", "daily", Fuzz.revisionID, "-1"] {
        _ = try? Job.find(spec, in: revs, now: Target.now)
    }
    let history = revs.map { ScheduleRevision(id: $0.id, timestamp: $0.timestamp, tags: $0.tags, complete: $0.isComplete) }
    _ = Target.schedule.next(now: Target.now, spread: 1234, history: history)
    _ = Target.schedule.sla(now: Target.now, history: history)
    _ = Target.schedule.expire(now: Target.now, history: history)
    for r in revs {
        _ = r.isFutureDated(now: Target.now)
        let text = r.yaml()
        let again: Revision
        do { again = try Revision.parse(text, path: "rewritten") } catch {
            Fuzz.fail("a revision that loaded cannot be read back after writing it: \(error)\n\(text)")
        }
        // Keys are written sorted, so compare what is written, and the fields.
        // A Date is a Double of seconds since 2001: centuries away from it,
        // microseconds are beyond its precision and a timestamp may move by
        // one or two of them when written and read back (harmless; a
        // backup's own timestamps are near now). Such inputs compare their
        // timestamps to within 10 µs and skip the text comparison.
        let farOff = abs(r.timestamp.timeIntervalSinceReferenceDate) >= 4_294_967_296
        let same = (farOff || again.yaml() == text) && again.id == r.id
            && (farOff ? abs(again.timestamp.timeIntervalSince(r.timestamp)) < 1e-5 : again.timestamp == r.timestamp)
            && again.parent == r.parent && again.tags == r.tags && again.trust == r.trust
            && again.backend == r.backend && again.isComplete == r.isComplete
        Fuzz.check(same, "a revision changed when written and read back:\n\(text)\nwas: \(r)\nnow: \(again)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Fuzz.one(data, size) { input in
        Fuzz.write(Target.path, input)
        if let report = try? Fuzz.job.scanReport() { use(report.revisions) }
        let history = JobHistory.scan(jobPath: Fuzz.job.path, log: Fuzz.quiet)
        _ = JobStatusEntry.make(job: "fuzz", schedule: Target.schedule, history: history, status: "waiting",
                                nextTime: Target.now, nextTags: ["daily"], failures: 0, now: Target.now)
        // Whatever its name: the decoder and its users, also for a uuid
        // that is not the file's name.
        if let r = try? Revision.parse(String(decoding: input, as: UTF8.self), path: Target.path) { use([r]) }
    }
}

runFuzzer(fuzzOne)
