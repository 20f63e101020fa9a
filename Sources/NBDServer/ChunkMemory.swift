// ChunkMemory: where decoded chunks live. Chunk buffers are NIO ByteBuffers
// (replies send slices of them without copying) whose memory comes from
// this allocator: fixed-size slabs mapped with mmap, advised to use huge
// pages, recycled through a short free list instead of going back to malloc.
// That keeps the server's memory at what it uses (malloc arenas would keep
// freed 4 MiB blocks and fragment), avoids faulting in fresh pages for every
// chunk, and lets the cache count every chunk buffer still alive, including
// evicted ones a reply still sends.
import Foundation
@_spi(CustomByteBufferAllocator) import NIOCore
#if canImport(Glibc)
import Glibc
#endif

public enum ChunkMemory {
    /// Slab size: one chunk.
    public static let slabSize = 4 << 20

    private struct State {
        var slabs = Set<UInt>()
        var free: [UnsafeMutableRawPointer] = []
        var live = 0
        var maxFree = 8
    }

    // nonisolated(unsafe): the pointer is set once (Swift runs the initializer once); the mutex it points to is only used through pthread_mutex_lock/unlock.
    nonisolated(unsafe) private static let lock: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()
    // nonisolated(unsafe): read and changed only in `locked`, under `lock`.
    nonisolated(unsafe) private static var state = State()

    private static func locked<T>(_ body: (inout State) -> T) -> T {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return body(&state)
    }

    /// Slabs handed out and not yet returned.
    public static var liveSlabs: Int { locked { $0.live } }
    /// Slabs mapped in total (live and free).
    public static var mappedSlabs: Int { locked { $0.slabs.count } }

    /// How many freed slabs to keep for reuse.
    public static func setFreeListLimit(_ n: Int) {
        let extra: [UnsafeMutableRawPointer] = locked { s in
            s.maxFree = max(0, n)
            var out: [UnsafeMutableRawPointer] = []
            while s.free.count > s.maxFree {
                let p = s.free.removeLast()
                s.slabs.remove(UInt(bitPattern: p))
                out.append(p)
            }
            return out
        }
        for p in extra { munmap(p, slabSize) }
    }

    private static func newSlab() -> UnsafeMutableRawPointer? {
        let p = mmap(nil, slabSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let p, p != MAP_FAILED else { return nil }
        _ = madvise(p, slabSize, 14)  // MADV_HUGEPAGE
        return p
    }

    static func allocate(_ size: Int) -> UnsafeMutableRawPointer? {
        guard size == slabSize else { return malloc(max(1, size)) }
        if let p: UnsafeMutableRawPointer = locked({ s in
            if let p = s.free.popLast() {
                s.live += 1
                return p
            }
            return nil
        }) {
            return p
        }
        guard let p = newSlab() else { return malloc(size) }
        locked { s in
            s.slabs.insert(UInt(bitPattern: p))
            s.live += 1
        }
        return p
    }

    static func deallocate(_ p: UnsafeMutableRawPointer) {
        let unmap: Bool? = locked { s in
            guard s.slabs.contains(UInt(bitPattern: p)) else { return nil }
            s.live -= 1
            if s.free.count < s.maxFree {
                s.free.append(p)
                return false
            }
            s.slabs.remove(UInt(bitPattern: p))
            return true
        }
        switch unmap {
        case nil: free(p)
        case true?: munmap(p, slabSize)
        case false?: break
        }
    }

    static func reallocate(_ p: UnsafeMutableRawPointer?, _ old: Int, _ new: Int) -> UnsafeMutableRawPointer? {
        guard let p else { return allocate(new) }
        let isSlab = locked { $0.slabs.contains(UInt(bitPattern: p)) }
        if !isSlab { return realloc(p, new) }
        if new <= slabSize { return p }
        guard let q = malloc(new) else { return nil }
        q.copyMemory(from: p, byteCount: min(old, slabSize))
        deallocate(p)
        return q
    }

    /// The allocator of chunk buffers: request exactly `slabSize` bytes.
    public static let allocator = ByteBufferAllocator(
        allocate: { size in ChunkMemory.allocate(Int(size)) },
        reallocate: { p, old, new in ChunkMemory.reallocate(p, Int(old), Int(new)) },
        deallocate: { p in ChunkMemory.deallocate(p) },
        copy: { dst, src, n in dst.copyMemory(from: src, byteCount: Int(n)) })
}
