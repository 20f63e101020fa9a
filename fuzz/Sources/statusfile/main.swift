// Fuzz target statusfile: the scheduler's status file (a YAML list of flow
// mappings), read by `backy check` (Check.run: size limit, YAML screening,
// SLA and problem lines, the perfdata age), and its entries shown in the
// console's `jobs` and `status` tables.
import ChunkStore
import Foundation
import FuzzSupport
import Scheduler

enum Target {
    static let path = Fuzz.scratch + "/status"
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Fuzz.one(data, size) { input in
        Fuzz.write(Target.path, input)
        let result = Check.run(statusFile: Target.path)
        Fuzz.check((0...3).contains(result.code), "check exited \(result.code)")  // OK, WARNING, CRITICAL, UNKNOWN
        let text = String(decoding: input, as: UTF8.self)
        guard let entries = try? StatusFile.parse(text, source: Target.path) else { return }
        _ = ConsoleCommands.jobs(entries, filter: nil)
        _ = ConsoleCommands.statusTable(entries)
    }
}

runFuzzer(fuzzOne)
