// BackupCheck: the post-backup verification every writer of a new map uses
// (the file and Ceph sources, upgrade; docs/store-format.md, "Verification
// of a new revision"). It reads blocks of the source a second time, in
// parallel, and compares each with what the writer recorded:
//   * a block whose chunk this run stored: byte for byte with the chunk read
//     back from the store (equal bytes prove both that the source still holds
//     what was hashed into the map and that the stored chunk holds it);
//   * a block the map calls zero: it must read as zeros;
//   * any other block: by the XXH64 the backup pass recorded (SHA-256 where
//     none was), or — `.storedChunk` — byte for byte with the stored chunk,
//     hash-checked; or by SHA-256 against a given id (`.id`).
// Blocks whose chunk this run stored come last: the writer may still be
// committing them, and the check waits for its commits before the first
// read-back. Callers say what their findings mean, in their own words.
import Foundation

public final class BackupCheck: Sendable {
    /// What a block is compared with.
    public enum Against: Sendable, Equatable {
        /// The new map (see above).
        case newRevision
        /// The chunk the new map names, read back (hash-checked) and
        /// compared byte for byte, whether or not this run stored it.
        case storedChunk
        /// Another id (a parent's), by SHA-256.
        case id(ChunkID)
    }

    public struct Item: Sendable, Equatable {
        public var index: Int
        public var against: Against
        public init(index: Int, against: Against) {
            self.index = index
            self.against = against
        }
    }

    /// A block as the source reads it the second time.
    public enum SourceRead {
        /// `workspace.data[0..<length]`, with its XXH64 if the source
        /// computed it while reading (asked for by `wantFast`).
        case bytes(length: Int, fast: UInt64?)
        /// The source has a hole there (reads as zeros without reading).
        case hole
        /// The source cannot give it now (stopped): not checked.
        case unavailable
    }

    /// How a block differs.
    public enum Mismatch {
        /// The source has a hole where the map names a chunk.
        case hole(expected: ChunkID)
        case shortRead(got: Int, length: Int)
        /// The map has the zero chunk; the source has data (hashing to `actual`).
        case notZero(actual: ChunkID)
        /// The source hashes to `actual`, the map (or the given id) has `expected`.
        case differs(actual: ChunkID, expected: ChunkID)
        /// The source matches the map, the stored chunk does not read back
        /// as written.
        case storedDiffers(expected: ChunkID)
        /// The stored chunk could not be read back.
        case readBackFailed(expected: ChunkID, error: Error)
    }

    public enum Outcome {
        case match
        case mismatch(Mismatch)
        /// Past the deadline, or the source was unavailable.
        case skipped
    }

    public struct Result {
        public var item: Item
        public var outcome: Outcome
        /// A stored chunk was read back (successfully or not).
        public var readBack: Bool

        /// The stored chunk could not be read back.
        public var readBackFailed: Bool {
            if case .mismatch(.readBackFailed) = outcome { return true }
            return false
        }
    }

    public let writer: ChunkWriter
    public let map: ChunkMap

    public init(writer: ChunkWriter, map: ChunkMap) {
        self.writer = writer
        self.map = map
    }

    /// Whether the block's chunk was stored by this run, at this index.
    func storedHere(_ i: Int, _ written: [ChunkID: Int]) -> Bool {
        let e = map.chunks[i]
        return !e.isZero && written[e] == i
    }

    /// The items in the order they are checked: blocks whose chunk this run
    /// stored after the others, zero blocks last. A source that reads ahead
    /// reads in this order.
    public func plan(_ items: [Item]) -> [Item] {
        let written = writer.written
        func group(_ it: Item) -> Int {
            if map.chunks[it.index].isZero { return 2 }
            return it.against == .newRevision && storedHere(it.index, written) ? 1 : 0
        }
        return items.filter { group($0) == 0 } + items.filter { group($0) == 1 } + items.filter { group($0) == 2 }
    }

    /// Every block of the map, against the new revision, in check order.
    public func planAll() -> [Item] {
        plan(map.chunks.indices.map { Item(index: $0, against: .newRevision) })
    }

    /// Checks `items` (as `plan` ordered them) on the writer's threads until
    /// done or `deadline` (then `onDeadline` is called once and the rest
    /// is skipped). `read(k, i, workspace, wantFast)` reads block `i`, the
    /// `k`-th item, into `workspace.data`. Returns one result per item.
    public func run(_ items: [Item], deadline: Date? = nil, onDeadline: @escaping () -> Void = {},
                    read: @escaping (Int, Int, ChunkWorkspace, Bool) throws -> SourceRead) throws -> [Result] {
        let written = writer.written
        let fastHashes = writer.fastHashes
        let store = writer.job.store
        let results = Locked<[Result?]>([Result?](repeating: nil, count: items.count))
        let pastDeadline = Locked(false)
        try Parallel.forEach(count: items.count, threads: writer.threads, setup: { _ in ChunkWorkspace() }) { ws, k in
            let item = items[k]
            func done(_ o: Outcome, readBack: Bool = false) {
                results.with { $0[k] = Result(item: item, outcome: o, readBack: readBack) }
            }
            if let deadline, Date() >= deadline {
                let first = pastDeadline.with { p -> Bool in defer { p = true }; return !p }
                if first { onDeadline() }
                return done(.skipped)
            }
            let i = item.index
            let expected = map.chunks[i]
            let len = map.length(of: i)
            let storedNow = item.against == .newRevision && storedHere(i, written)
            let recorded = i < fastHashes.count ? fastHashes[i] : 0
            let wantFast = item.against == .newRevision && !expected.isZero && !storedNow && recorded != 0
            let got: Int
            var fast: UInt64?
            switch try read(k, i, ws, wantFast) {
            case .unavailable:
                return done(.skipped)
            case .hole:
                return done(expected.isZero ? .match : .mismatch(.hole(expected: expected)))
            case .bytes(let n, let f):
                got = n
                fast = f
            }
            if got != len { return done(.mismatch(.shortRead(got: got, length: len))) }
            let buf = UnsafeRawBufferPointer(rebasing: ws.data[0..<len])
            if case .id(let other) = item.against {
                let actual = ChunkHash.id(of: buf)
                return done(actual == other ? .match : .mismatch(.differs(actual: actual, expected: other)))
            }
            if expected.isZero {
                if ChunkHash.isAllZero(buf) { return done(.match) }
                return done(.mismatch(.notZero(actual: ChunkHash.sha256(buf))))
            }
            if storedNow || item.against == .storedChunk {
                // Read the stored chunk back and compare it with the
                // source's bytes.
                try self.writer.finishCommits()
                let second = ws.spare
                do {
                    let n = try store.read(expected, into: second, workspace: ws, checkHash: item.against == .storedChunk)
                    if n == len && memcmp(second.baseAddress!, buf.baseAddress!, len) == 0 { return done(.match, readBack: true) }
                    let actual = ChunkHash.id(of: buf)
                    return done(.mismatch(actual != expected ? .differs(actual: actual, expected: expected)
                                                             : .storedDiffers(expected: expected)), readBack: true)
                } catch {
                    return done(.mismatch(.readBackFailed(expected: expected, error: error)), readBack: true)
                }
            }
            // The backup pass hashed this block into the map and recorded
            // its XXH64; the second read must give the same bytes (SHA-256
            // again where no XXH64 was recorded).
            if recorded != 0 && (fast ?? FastHash.xxh64(buf)) == recorded { return done(.match) }
            let actual = ChunkHash.id(of: buf)
            done(actual == expected ? .match : .mismatch(.differs(actual: actual, expected: expected)))
        }
        return results.get.enumerated().map { $0.element ?? Result(item: items[$0.offset], outcome: .skipped, readBack: false) }
    }
}
