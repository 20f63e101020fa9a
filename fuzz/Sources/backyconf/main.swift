// Fuzz target backyconf: the scheduler's configuration `backy.conf`, read by
// SchedulerConfig.load (size limit, UTF-8, YAML screening, every key
// checked) and loadGlobal (`check`), then used as the daemon uses it: each
// job's spread, next run, SLA and expiry, and the `config` the daemon
// writes into the job directory, which the job's backup must read back as
// the same source.
import ChunkStore
import Foundation
import FuzzSupport
import Scheduler

enum Target {
    static let path = Fuzz.scratch + "/backy.conf"
    static let now = Date(timeIntervalSince1970: 1_800_000_000)
}

func sortedPairs(_ m: YAMLMap) -> [String] { m.keys.sorted().map { "\($0)=\(m[$0]!)" } }

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Fuzz.one(data, size) { input in
        Fuzz.write(Target.path, input)
        _ = try? SchedulerConfig.loadGlobal(path: Target.path)
        guard let config = try? SchedulerConfig.load(path: Target.path) else { return }
        for job in config.jobs {
            let spread = job.spread
            _ = job.schedule.idealNext(now: Target.now, spread: spread)
            _ = job.schedule.next(now: Target.now, spread: spread, history: [])
            _ = job.schedule.sla(now: Target.now, history: [])
            _ = job.schedule.expire(now: Target.now, history: [])
            let text = YAML.flow(.map(job.source)) + "\n"
            guard let back = try? YAML.parse(text, source: "config").map else {
                Fuzz.fail("the config written for job \(job.name) cannot be read back:\n\(text)")
            }
            Fuzz.check(sortedPairs(back) == sortedPairs(job.source),
                         "job \(job.name): the config read back differs from the source written:\n\(text)")
        }
    }
}

runFuzzer(fuzzOne)
