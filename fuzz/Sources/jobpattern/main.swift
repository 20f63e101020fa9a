// Fuzz target jobpattern: the console's `jobs REGEX` matcher (JobPattern:
// Python-style regular expressions compiled to a program run without
// backtracking). The input's first line is the pattern, the rest the job
// names it is searched in. Compiling may throw; matching must stay within
// its time budget (no backtracking blow-up) and never trap.
import FuzzSupport
import Scheduler

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Fuzz.one(data, size) { input in
        let text = String(decoding: input, as: UTF8.self)
        let parts = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
        guard let pattern = try? JobPattern(String(parts[0])) else { return }
        let names = parts.count > 1 ? parts[1].split(separator: "\n").map(String.init) : ["vm01"]
        for name in names.prefix(64) {
            do { _ = try pattern.matches(name, budget: 5) } catch {
                Fuzz.fail("matching \(name.utf8.count) bytes took more than 5 s: \(error)")
            }
        }
    }
}

runFuzzer(fuzzOne)
