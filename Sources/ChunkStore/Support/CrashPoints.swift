// CrashPoints: named steps of a backup's durable writes (docs/store-format.md,
// "Order of writes") at which a test can make the process kill itself with
// SIGKILL — as kill -9 or a crash would — so that a crash at each step is
// tested deterministically, beside the kills at random moments. The library
// never reads the environment: the command line arms one point at start-up
// (from BACKY_CRASH_AT=name[:n]); unarmed, as in production, reaching a
// point costs one load and compare.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum CrashPoint: String, CaseIterable, Sendable {
    /// A chunk file was fsynced and renamed into place (count: the n-th
    /// rename of this process).
    case chunkRenamed = "chunk-renamed"
    /// A new map (of a backup, or of `upgrade`) is written and fsynced
    /// under its temp name, not yet renamed into place.
    case mapBeforeRename = "map-before-rename"
    /// The new map is in place; the `.rev` has no `duration` yet.
    case mapWritten = "map-written"
    /// The `.rev` with `duration` is written and fsynced under its temp
    /// name, not yet renamed over the incomplete one.
    case revBeforeComplete = "rev-before-complete"
    /// The `.rev` has its `duration` (the revision is complete); `last` and
    /// `last.rev` still point at the previous revision.
    case revComplete = "rev-complete"
}

public enum CrashPoints {
    // nonisolated(unsafe): both are set only by arm(), at start-up before any other thread runs; then `armed` is only read and `remaining` changed only under `lock`.
    nonisolated(unsafe) private static var armed: CrashPoint?
    nonisolated(unsafe) private static var remaining = 0
    private static let lock = NSLock()

    /// Arms `point`: the `hit`-th time this process reaches it, it dies.
    /// Call once, before any work starts.
    public static func arm(_ point: CrashPoint, hit: Int = 1) {
        remaining = max(1, hit)
        armed = point
    }

    /// Parses `name` or `name:n` (n ≥ 1).
    public static func parse(_ spec: String) throws -> (point: CrashPoint, hit: Int) {
        let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let known = CrashPoint.allCases.map(\.rawValue).joined(separator: ", ")
        guard let point = CrashPoint(rawValue: parts[0]) else {
            throw BackyError(.usage, "unknown crash point '\(parts[0])' (known: \(known))")
        }
        guard parts.count == 2 else { return (point, 1) }
        guard let n = Int(parts[1]), n >= 1 else {
            throw BackyError(.usage, "crash point '\(spec)': the count after ':' must be a whole number ≥ 1")
        }
        return (point, n)
    }

    /// Marks that the process has reached `point`; dies there if armed.
    @inline(__always)
    public static func reached(_ point: CrashPoint) {
        guard let a = armed, a == point else { return }
        countDown()
    }

    private static func countDown() {
        lock.lock()
        remaining -= 1
        let now = remaining == 0
        lock.unlock()
        if now {
            kill(getpid(), SIGKILL)
            while true { pause() }
        }
    }
}
