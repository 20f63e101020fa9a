// OverlaySpace: the disk space all writable overlays together may use
// (`--overlay-mib`). Before a write an overlay reserves the most the write
// can add; afterwards the reservation is replaced by what the overlay file
// really occupies (st_blocks, so punched holes give space back). A write
// that does not fit fails with ENOSPC for that client only; when a
// connection ends, its overlay's space is returned at once.
import Foundation

// @unchecked Sendable: `used` is read and changed only under `lock`.
public final class OverlaySpace: @unchecked Sendable {
    public let limit: UInt64
    private let lock = NSLock()
    private var used: UInt64 = 0

    public init(limit: UInt64) {
        self.limit = limit
    }

    /// Bytes the overlays occupy (and reserve) now.
    public var inUse: UInt64 {
        lock.lock(); defer { lock.unlock() }
        return used
    }

    /// Reserves `n` bytes; false if that would pass the limit.
    func reserve(_ n: UInt64) -> Bool {
        lock.lock(); defer { lock.unlock() }
        if used + n > limit { return false }
        used += n
        return true
    }

    /// Gives back `release` bytes and takes `take` (never fails).
    func settle(release: UInt64, take: UInt64) {
        lock.lock(); defer { lock.unlock() }
        used = used - min(used, release) + take
    }
}

public struct OverlayFull: Error, CustomStringConvertible {
    public let description: String
}
