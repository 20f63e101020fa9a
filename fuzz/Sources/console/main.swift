// Fuzz target console: bytes a client sends to the scheduler's telnet
// console, taken as ConsoleHandler takes them: TelnetDecoder (IAC
// negotiation, subnegotiation, IP), LineAssembler (line ends, editing,
// the line length cap), then each line through ConsoleCommands.execute
// (shell-style splitting, `;`, every command, `jobs REGEX` with the
// JobPattern matcher) against a daemon of a few jobs, until `quit`.
import ChunkStore
import Foundation
import FuzzSupport
import Scheduler

/// A daemon of a few jobs whose state never changes.
final class Daemon: ConsoleBackend, @unchecked Sendable {  // unchecked: immutable after init
    let entries: [JobStatusEntry]
    init() {
        var e: [JobStatusEntry] = []
        for (i, name) in ["vm01", "vm02.root", "db-main", "web_frontend", "älter", "x", String(repeating: "long", count: 60)].enumerated() {
            var s = JobStatusEntry(job: name, sla: i % 3 == 0 ? "TOO OLD" : "OK", status: "waiting for deadline",
                                   lastTime: "2026-11-25 01:49:52 UTC", lastTags: "daily", lastDuration: "12.3 s",
                                   nextTime: "2026-11-26 01:49:52 UTC", nextTags: "daily,weekly", failures: i % 2,
                                   problems: i == 4 ? "1 damaged revision(s): x (map is missing)" : "-")
            if i == 2 { s.drill = "OK"; s.lastDrill = "2026-11-24 03:00:00 UTC"; s.lastDrillResult = "ok" }
            e.append(s)
        }
        entries = e
    }
    func statusEntries(now: Date) -> [JobStatusEntry] { entries }
    func trigger(_ name: String) -> String {
        entries.contains { $0.job == name } ? "Triggered job \(name)." : "\(name): no such job."
    }
    func triggerAll() -> [String] { entries.map { "Triggered job \($0.job)." } }
    func reload() -> String { "Configuration unchanged." }
}

enum Target {
    static let daemon = Daemon()
    static let now = Date(timeIntervalSince1970: 1_800_000_000)
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Fuzz.one(data, size, setup: { _ = Target.daemon }) { input in
        var telnet = TelnetDecoder()
        var lines = LineAssembler()
        // As the handler reads them: in pieces.
        var rest = input[...]
        session: while !rest.isEmpty {
            let piece = rest.prefix(Int(rest.first!) % 64 + 1)
            rest = rest.dropFirst(piece.count)
            let t = telnet.feed(piece)
            Fuzz.check(t.reply.count <= 3 * piece.count + 16, "\(t.reply.count) reply bytes for \(piece.count) bytes")
            for event in lines.feed(t.data) {
                guard case .line(let text) = event else { continue }
                Fuzz.check(text.utf8.count <= 4 * LineAssembler.maxLine, "a line of \(text.utf8.count) bytes")
                let reply = ConsoleCommands.execute(text, backend: Target.daemon, now: Target.now)
                if reply.quit { break session }
            }
        }
        if let last = lines.rest() { _ = ConsoleCommands.execute(last, backend: Target.daemon, now: Target.now) }
    }
}

runFuzzer(fuzzOne)
