// FuzzSupport: what every fuzz target shares: handing control to libFuzzer,
// the memory budget each input is held to, a scratch directory per process
// (a job directory made by the real `Job.initialize`) and writing an input
// to the file a decoder reads, so each target drives the decoder exactly as
// backy's commands do: through the file.
import CFuzzer
import ChunkStore
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Hands control to libFuzzer, which calls the target's
/// `LLVMFuzzerTestOneInput` for every input. (Which `main` the linker keeps,
/// this program's or libFuzzer's own, makes no difference: the target's
/// state is in lazily initialised statics.)
public func runFuzzer(_ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
}

public enum Fuzz {
    /// One chunk, the most a decoder may hold beyond a few times its input.
    public static let chunk = 4 << 20

    /// How much a decoder may allocate for one input of `n` bytes (bytes
    /// held at once, measured from the allocator): `factor` × n plus
    /// `extra` (by default one chunk; the fixed buffers a target allocates
    /// once are not counted).
    public struct Budget: Sendable {
        public var factor: Int
        public var extra: Int
        public init(factor: Int = 4, extra: Int = Fuzz.chunk) {
            self.factor = factor
            self.extra = extra
        }
        public func allowed(_ n: Int) -> Int { factor * n + extra }
    }

    /// Runs `body` on one input and aborts (libFuzzer then keeps the input
    /// as a crash) if it held more memory at once than `budget` allows.
    /// `setup` runs first, unmetered: it creates what the target keeps
    /// for all inputs (a chunk workspace, the job directory). Without
    /// AddressSanitizer only libFuzzer's -rss_limit_mb and -malloc_limit_mb
    /// apply.
    public static func one(_ data: UnsafePointer<UInt8>?, _ size: Int, budget: Budget = Budget(),
                           setup: () -> Void = {}, _ body: (UnsafeRawBufferPointer) -> Void) -> CInt {
        _ = job
        setup()
        backy_fuzz_meter_start()
        let base = backy_fuzz_meter_reset()
        body(UnsafeRawBufferPointer(start: size == 0 ? nil : UnsafeRawPointer(data), count: size))
        let held = backy_fuzz_meter_peak() - base
        if backy_fuzz_meter_available() != 0 && held > Int64(budget.allowed(size)) {
            fputs("==backy-fuzz== an input of \(size) bytes made the decoder hold \(held) bytes at once; the budget is \(budget.factor) × input + \(budget.extra) = \(budget.allowed(size))\n", stderr)
            abort()
        }
        return 0
    }

    /// Fails the input with a message (precondition's message is not
    /// printed in a release build).
    public static func check(_ ok: Bool, _ message: @autoclosure () -> String) {
        if !ok { fail(message()) }
    }

    public static func fail(_ message: String) -> Never {
        fputs("==backy-fuzz== \(message)\n", stderr)
        abort()
    }

    /// A logger that drops everything (decoders warn about what they skip).
    public static let quiet = Logger(label: "backy-fuzz", factory: { _ in SwiftLogNoOpLogHandler() })

    /// This process's scratch directory (in /dev/shm when there is one),
    /// removed at exit.
    public static let scratch: String = {
        let base = Posix.isDirectory("/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        var template = Array("\(base)/backy-fuzz-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            fatalError("cannot create a scratch directory in \(base)")
        }
        let dir = String(cString: template)
        atexit { _ = backy_fuzz_remove_tree(Fuzz.scratch) }
        return dir
    }()

    /// A job directory made by `Job.initialize` (file source /dev/null),
    /// with an empty chunk store and `.pins/`.
    public static let job: Job = {
        let path = scratch + "/job"
        do {
            try Job.initialize(path: path, source: YAMLMap([("filename", .string("/dev/null")), ("type", .string("file"))]))
            try Posix.mkdirIfMissing(path + "/.pins")
            return try Job(path: path, logger: quiet)
        } catch {
            fatalError("cannot create the fuzz job directory \(path): \(error)")
        }
    }()

    /// A well-formed revision id (a real one from Fixtures/legacy).
    public static let revisionID = "5sKtHXDJdP7FE54CMyYMuf"

    /// Replaces `path` with exactly `bytes` (mode 0644).
    public static func write(_ path: String, _ bytes: UnsafeRawBufferPointer) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { fatalError("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        if bytes.count > 0 {
            do { try Posix.pwriteFull(fd, bytes.baseAddress!, bytes.count, 0, path: path) } catch {
                fatalError("cannot write \(path): \(error)")
            }
        }
    }
}
