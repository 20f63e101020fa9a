// RunError.swift — the last error line of a failed run, read from what the
// run appended to the job's backy.log: the child prints its one `Error: …`
// line on stderr (appended to the log) and logs `… ERROR …` lines; the last
// such line is what the scheduler's log, the console and the status file
// show for a failed run. Reads at most the last 64 KiB of what was appended.

import ChunkStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

enum RunError {
    static let window = 64 * 1024
    static let maxLength = 300

    /// The size of the log now (where a run's output will start).
    static func offset(_ logPath: String) -> Int64 {
        guard let st = Posix.linkStatus(logPath), (st.st_mode & S_IFMT) == S_IFREG else { return 0 }
        return Int64(st.st_size)
    }

    /// The last error line written to `logPath` after `offset`, or nil.
    static func last(logPath: String, since offset: Int64) -> String? {
        let fd = open(logPath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let end = Int64(st.st_size)
        // A rotated (shorter) log: read its start.
        let from = max(end < offset ? 0 : offset, end - Int64(window))
        guard end > from else { return nil }
        var buf = [UInt8](repeating: 0, count: Int(end - from))
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, off_t(from)) }
        guard n > 0 else { return nil }
        let text = String(decoding: buf[0..<n], as: UTF8.self)
        return pick(text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init))
    }

    /// The last `Error: …` line, else the last line logged at ERROR or
    /// CRITICAL (without its timestamp and pid), shortened.
    static func pick(_ lines: [String]) -> String? {
        if let l = lines.last(where: { $0.hasPrefix("Error: ") }) { return shorten(l) }
        for l in lines.reversed() {
            for level in [" ERROR ", " CRITICAL "] {
                if let r = l.range(of: level), l.contains("] ") {
                    return shorten("Error: " + l[r.upperBound...])
                }
            }
        }
        return nil
    }

    static func shorten(_ s: String) -> String {
        let clean = String(s.unicodeScalars.map { $0.value < 0x20 ? " " : Character($0) })
        return clean.count > maxLength ? String(clean.prefix(maxLength - 1)) + "…" : clean
    }
}
