// Drill: a restore drill of one revision. The revision is mounted privately
// (raw views only); the partition table must read without problems, then
// each filesystem's own read-only checker runs on its view (e2fsck -fn,
// xfs_repair -n, fsck.vfat -n) within a time limit for the whole drill. The
// result is recorded in the job (drill.json, docs/mount.md) and returned:
// clean (exit 0), failed (1: a filesystem or the table is damaged, or a
// partition that should hold a filesystem holds none), error (2: the drill
// could not run, timed out, or found nothing it could check).
import ChunkStore
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

public struct DrillResult: Codable, Sendable, Equatable {
    public struct Filesystem: Codable, Sendable, Equatable {
        public var name: String
        public var type: String?
        public var offset: UInt64
        public var size: UInt64
        /// The command line of the checker, if one ran.
        public var checker: String?
        /// clean, failed, skipped, timeout, error.
        public var verdict: String
        public var exitCode: Int32?
        public var seconds: Double?
        /// Why (for skipped and failed ones without checker output).
        public var note: String?
        /// The checker's last lines.
        public var output: [String]

        enum CodingKeys: String, CodingKey {
            case name, type, offset, size, checker, verdict, note, output, seconds
            case exitCode = "exit_code"
        }

        public init(name: String, type: String?, offset: UInt64, size: UInt64, checker: String?, verdict: String,
                    exitCode: Int32?, seconds: Double?, note: String?, output: [String]) {
            self.name = name
            self.type = type
            self.offset = offset
            self.size = size
            self.checker = checker
            self.verdict = verdict
            self.exitCode = exitCode
            self.seconds = seconds
            self.note = note
            self.output = output
        }
    }

    /// When the drill ran (ISO 8601, UTC).
    public var time: String
    public var revision: String?
    public var revisionTime: String?
    /// clean, failed or error.
    public var verdict: String
    public var exitCode: Int32
    public var seconds: Double
    public var partitionTable: String?
    public var problems: [String]
    public var filesystems: [Filesystem]
    /// Why the drill could not run (verdict error).
    public var message: String?

    enum CodingKeys: String, CodingKey {
        case time, revision, verdict, seconds, problems, filesystems, message
        case revisionTime = "revision_time"
        case exitCode = "exit_code"
        case partitionTable = "partition_table"
    }

    public init(time: String, revision: String?, revisionTime: String?, verdict: String, exitCode: Int32, seconds: Double,
                partitionTable: String?, problems: [String], filesystems: [Filesystem], message: String?) {
        self.time = time
        self.revision = revision
        self.revisionTime = revisionTime
        self.verdict = verdict
        self.exitCode = exitCode
        self.seconds = seconds
        self.partitionTable = partitionTable
        self.problems = problems
        self.filesystems = filesystems
        self.message = message
    }

    public var date: Date? { Timestamp.parse(time) }

    /// The names of the failed filesystems.
    public var failedNames: [String] { filesystems.filter { $0.verdict == "failed" }.map { $0.name } }
}

public enum Drill {
    public static let defaultTimeLimit: Double = 3600

    /// GPT and MBR partition types that are meant to hold a Linux or
    /// Windows filesystem: a partition of one of them without a recognized
    /// filesystem fails the drill.
    static let dataPartitionTypes: Set<String> = [
        "0fc63daf-8483-4772-8e79-3d69d8477de4",  // Linux filesystem
        "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7",  // Microsoft basic data
        "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",  // EFI system partition
        "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",  // Linux root (x86-64)
        "933ac7e1-2eb4-4f13-b844-0e14e2aef915",  // Linux /home
        "0x83", "0x07", "0x0b", "0x0c", "0x0e", "0xef",
    ]

    /// The read-only checker of a filesystem type: program and arguments
    /// before the device.
    static func checker(for type: String) -> (program: String, args: [String])? {
        switch type {
        case "ext2", "ext3", "ext4": return ("e2fsck", ["-fn"])
        case "xfs": return ("xfs_repair", ["-n"])
        case "vfat", "msdos": return ("fsck.vfat", ["-n"])
        default: return nil
        }
    }

    /// Verdict of a checker's exit status.
    static func verdict(program: String, status: Int32) -> String {
        if status == 127 || status >= 128 { return "error" }
        switch program {
        case "e2fsck": return status == 0 ? "clean" : "failed"       // 4 errors left, 8 cannot check
        case "fsck.vfat": return status == 0 ? "clean" : status == 1 ? "failed" : "error"
        default: return status == 0 ? "clean" : "failed"           // xfs_repair -n: 1 corruption
        }
    }

    /// Runs a drill of revision `spec`. Never throws once the job is open:
    /// what goes wrong is the result's `error`.
    public static func run(job: Job, spec: String, timeLimit: Double = defaultTimeLimit, log: Logger) -> DrillResult {
        let started = Date()
        var result = DrillResult(time: Timestamp.iso8601(started), revision: nil, revisionTime: nil, verdict: "error",
                                 exitCode: 2, seconds: 0, partitionTable: nil, problems: [], filesystems: [], message: nil)
        var session: MountSession?
        do {
            let rev = try PinnedRevision(job: job, spec: spec, log: log)
            result.revision = rev.revision.id
            result.revisionTime = Timestamp.iso8601(rev.revision.timestamp)
            var opts = MountSession.Options()
            opts.volumes = []
            opts.isPrivate = true
            let s = MountSession(revision: rev, mountpoint: try MountSession.privateMountpoint(), options: opts, log: log)
            session = s
            try s.start()
            guard let layout = s.layout else { throw BackyError(.other, "the partition table was not read") }
            result.partitionTable = layout.table
            result.problems = layout.problems
            for v in layout.volumes {
                let remaining = timeLimit - Date().timeIntervalSince(started)
                result.filesystems.append(check(v, path: s.rawPath(v), hasTable: layout.table != nil,
                                                timeLimit: remaining, log: log))
            }
            conclude(&result)
        } catch {
            result.message = "\(error)"
        }
        session?.stop()
        result.seconds = (Date().timeIntervalSince(started) * 100).rounded() / 100
        return result
    }

    static func check(_ v: Volume, path: String, hasTable: Bool, timeLimit: Double, log: Logger) -> DrillResult.Filesystem {
        var fs = DrillResult.Filesystem(name: v.name, type: v.type, offset: v.offset, size: v.size, checker: nil,
                                        verdict: "skipped", exitCode: nil, seconds: nil, note: nil, output: [])
        var type = v.type
        if type == nil {
            // A partition meant for a filesystem that holds none, or a disk
            // with neither table nor filesystem, is damaged (or garbage).
            let meant = !hasTable || dataPartitionTypes.contains((v.partitionType ?? "").lowercased())
            guard meant else {
                fs.note = "no filesystem recognized (partition type \(v.partitionType ?? "unknown")), not checked"
                return fs
            }
            fs.verdict = "failed"
            fs.note = hasTable ? "no filesystem recognized in a partition of type \(v.partitionType ?? "?")"
                : "no partition table and no filesystem recognized"
            // Linux partitions get e2fsck anyway: it finds backup superblocks
            // and says what is left.
            guard ["0fc63daf-8483-4772-8e79-3d69d8477de4", "0x83"].contains((v.partitionType ?? "").lowercased()) else { return fs }
            type = "ext4"
        }
        guard let (program, args) = checker(for: type!) else {
            fs.note = v.unopenable ?? "no checker for \(type!), not checked"
            return fs
        }
        guard let exe = Spawn.which(program) else {
            if fs.verdict != "failed" { fs.note = "\(program) is not installed, not checked" }
            return fs
        }
        guard timeLimit > 0 else {
            fs.verdict = "timeout"
            fs.note = "the drill's time limit was reached before this filesystem"
            return fs
        }
        fs.checker = ([program] + args).joined(separator: " ")
        let t0 = Date()
        do {
            let out = try Spawn.run(exe, args + [path], timeout: timeLimit)
            fs.seconds = (Date().timeIntervalSince(t0) * 100).rounded() / 100
            fs.exitCode = out.status
            // The private mount's path means nothing later: name the view.
            let view = (path as NSString).lastPathComponent
            fs.output = out.lastLines(8).map { FileRestore.printable($0.replacingOccurrences(of: path, with: view)) }
            if fs.note == nil, out.text.contains("skipping journal recovery") {
                fs.note = "journal not replayed: the filesystem was in use when it was snapshotted"
            }
            if out.timedOut {
                fs.verdict = "timeout"
                fs.note = "\(program) did not finish within the time limit (\(Int(timeLimit)) s)"
            } else if fs.verdict != "failed" {
                fs.verdict = verdict(program: program, status: out.status)
            }
        } catch {
            fs.verdict = "error"
            fs.note = "\(error)"
        }
        log.info("Drill: \(v.name) \(v.type ?? "-"): \(fs.verdict)\(fs.exitCode.map { " (\(program) exit \($0))" } ?? "")")
        return fs
    }

    /// Sets the overall verdict and exit code from the parts.
    static func conclude(_ r: inout DrillResult) {
        let verdicts = r.filesystems.map { $0.verdict }
        if !r.problems.isEmpty || verdicts.contains("failed") {
            r.verdict = "failed"
            r.exitCode = 1
        } else if verdicts.contains("error") || verdicts.contains("timeout") {
            r.verdict = "error"
            r.exitCode = 2
            r.message = "a checker could not finish"
        } else if !verdicts.contains("clean") {
            r.verdict = "error"
            r.exitCode = 2
            r.message = "no filesystem could be checked"
        } else {
            r.verdict = "clean"
            r.exitCode = 0
        }
    }

    /// Writes the result to the job's drill.json (atomically; in a RADOS
    /// store the object every attached directory reads).
    public static func record(_ r: DrillResult, job: Job) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try enc.encode(r)
        try job.backend.write(.drillRecord, Array(data) + [10], durable: true, crashPoint: nil)
    }

    /// The last recorded drill of a job, if any (nil for a missing or
    /// unreadable record).
    public static func last(job: Job) -> DrillResult? {
        guard let bytes = try? job.backend.read(.drillRecord, limit: 1 << 20) else { return nil }
        return try? JSONDecoder().decode(DrillResult.self, from: Data(bytes))
    }

    /// The text `backy drill` prints.
    public static func describe(_ r: DrillResult) -> [String] {
        var lines: [String] = []
        var head = "Drill of revision \(r.revision ?? "?")"
        if let t = r.revisionTime, let d = Timestamp.parse(t) { head += " (\(Timestamp.formatSeconds(d)) UTC)" }
        if let t = r.partitionTable { head += ": \(t == "dos" ? "MBR" : t.uppercased()) partition table" }
        else if !r.filesystems.isEmpty { head += ": no partition table" }
        lines.append(head)
        for p in r.problems { lines.append("  problem: \(p)") }
        let w = max(4, r.filesystems.map { $0.name.count }.max() ?? 4)
        for f in r.filesystems {
            var l = "  " + f.name.padding(toLength: w, withPad: " ", startingAt: 0) + "  "
            l += (f.type ?? "-").padding(toLength: 6, withPad: " ", startingAt: 0) + "  "
            l += (f.verdict == "failed" ? "FAILED" : f.verdict).padding(toLength: 7, withPad: " ", startingAt: 0)
            if let c = f.checker {
                l += "  \(c)"
                if let code = f.exitCode, code != 0 { l += " exit \(code)" }
                if let s = f.seconds { l += String(format: ", %.1f s", s) }
            }
            if let n = f.note { l += "  (\(n))" }
            lines.append(l)
            if f.verdict == "failed" || f.verdict == "error" || f.verdict == "timeout" {
                for o in f.output.suffix(3) { lines.append("      " + o) }
            }
        }
        switch r.verdict {
        case "clean": lines.append("Result: clean")
        case "failed":
            let names = r.failedNames
            lines.append("Result: FAILED" + (names.isEmpty ? " (partition table)" : " (\(names.joined(separator: ", ")))"))
        default: lines.append("Result: could not run" + (r.message.map { ": \($0)" } ?? ""))
        }
        return lines
    }
}
