// RBDReadAhead: asynchronous reads of an RBD image ahead of the workers
// that consume them, so librbd and the OSDs work while the workers hash
// and compress.
import ChunkStore
import CRBD
import Foundation
import Rados
#if canImport(Glibc)
import Glibc
#endif

/// Read-ahead over a list of extents that worker threads consume roughly in
/// order (ChunkWriter and Parallel.forEach hand out items by a shared
/// counter): keeps up to `window` asynchronous reads in flight, so that
/// librbd and the OSDs work while the workers hash and compress. `take(k)`
/// waits for extent k, copies it out and starts the read `window` places
/// further on. Memory: `window` buffers.
// @unchecked Sendable: `slots`, `issueError`, `stopped` and `closed` are read and changed only under `cond`; each buffer is written by librados only while its slot's read is in flight and read by the one taker of that slot.
public final class RBDReadAhead: @unchecked Sendable {
    private struct Slot {
        var completion: rbd_completion_t?
        var position = -1
    }
    private let image: RBDImage
    private let extents: [(offset: UInt64, length: Int)]
    private let window: Int
    private let cond = NSCondition()
    private var slots: [Slot]
    /// One buffer per slot, fixed for the reader's life: the taker of a
    /// position reads its slot's buffer without the lock, which `slots`
    /// (changed under the lock by other takers) does not allow.
    private let buffers: [UnsafeMutableRawBufferPointer]
    private var issueError: Error?
    private var stopped = false
    private var closed = false

    public init(image: RBDImage, extents: [(offset: UInt64, length: Int)], window: Int, bufferSize: Int) {
        self.image = image
        self.extents = extents
        self.window = max(1, min(window, extents.count))
        slots = Array(repeating: Slot(), count: self.window)
        buffers = (0..<self.window).map { _ in .allocate(byteCount: bufferSize, alignment: 4096) }
        cond.lock()
        for k in 0..<self.window { issueLocked(k) }
        cond.unlock()
    }

    deinit { close() }

    /// Starts the read of position `k` into slot `k % window` (lock held;
    /// the slot is free: position k - window has been taken).
    private func issueLocked(_ k: Int) {
        guard k < extents.count, issueError == nil, !stopped else { return }
        let s = k % window
        do {
            let e = extents[k]
            slots[s].completion = try image.aioRead(at: e.offset, length: e.length, into: buffers[s].baseAddress!)
            slots[s].position = k
        } catch {
            issueError = error
        }
    }

    /// Copies extent `k` into `out` (nil: drops it); returns the bytes
    /// read, or nil if `stop` came before extent k's read was started.
    /// Every position must be taken once, in roughly ascending order (a
    /// position not taken holds up the one `window` places further on).
    @discardableResult
    public func take(_ k: Int, into out: UnsafeMutableRawBufferPointer?) throws -> Int? {
        let s = k % window
        cond.lock()
        // Slot s holds position k once the taker of k - window is done.
        while slots[s].position != k && issueError == nil && !stopped { cond.wait() }
        if slots[s].position != k {
            let e = issueError
            cond.unlock()
            if let e { throw e }
            return nil
        }
        let c = slots[s].completion!
        cond.unlock()
        // Only the taker of k touches slot s until it issues k + window.
        rbd_aio_wait_for_complete(c)
        let r = rbd_aio_get_return_value(c)
        rbd_aio_release(c)
        let e = extents[k]
        var failure: Error?
        if r < 0 {
            failure = CephError("cannot read \(e.length) bytes at offset \(e.offset) of \(image.spec)", Int32(r)).asBackyError
        } else if let out {
            out.baseAddress!.copyMemory(from: buffers[s].baseAddress!, byteCount: min(r, out.count))
        }
        cond.lock()
        slots[s].completion = nil
        slots[s].position = -1
        issueLocked(k + window)
        cond.broadcast()
        cond.unlock()
        if let failure { throw failure }
        return min(r, out?.count ?? r)
    }

    /// Starts no more reads; `take` of a position not yet started returns nil.
    public func stop() {
        cond.lock()
        stopped = true
        cond.broadcast()
        cond.unlock()
    }

    /// Waits for reads still in flight and frees the buffers. Call when no
    /// thread is in `take` any more.
    public func close() {
        cond.lock()
        if closed { cond.unlock(); return }
        closed = true
        stopped = true
        let pending = slots.compactMap { $0.completion }
        cond.broadcast()
        cond.unlock()
        for c in pending {
            rbd_aio_wait_for_complete(c)
            rbd_aio_release(c)
        }
        for b in buffers { b.deallocate() }
        slots = []
    }
}
