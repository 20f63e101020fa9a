// FileSourceTests: the file source's backup and verification passes, and the
// backup flow's handling of a failed verification, on real files.
import ChunkStore
import Foundation
import Logging
import XCTest
@testable import SourcesPlugins

final class FileSourceTests: XCTestCase {
    var dir = ""

    override func setUp() {
        dir = NSTemporaryDirectory() + "/backy-fs-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func writeImage(_ path: String, size: Int, seed: UInt8) {
        var bytes = [UInt8](repeating: 0, count: size)
        var x = UInt32(seed) | 1
        for i in stride(from: 0, to: size, by: 4) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; bytes[i] = UInt8(truncatingIfNeeded: x) }
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    }

    func context(_ job: Job, source: FileSource) throws -> BackupContext {
        let rev = Revision(id: RevisionID.make(), timestamp: Date(), parent: nil, tags: ["t"])
        let session = try PinSession(jobPath: job.path)
        let writer = ChunkWriter(job: job, session: session, threads: 2, forceRewrite: false)
        return BackupContext(job: job, revision: rev, parent: nil, writer: writer, session: session, log: Logger(label: "test"))
    }

    func makeJob(_ img: String) throws -> Job {
        try Job.initialize(path: dir + "/job", source: YAMLMap([("filename", .string(img)), ("type", .string("file"))]))
    }

    func testVerifyPassesForAStableSource() throws {
        let img = dir + "/img"
        writeImage(img, size: 9 * 1024 * 1024 + 17, seed: 3)
        let job = try makeJob(img)
        let src = FileSource(filename: img)
        let ctx = try context(job, source: src)
        let map = try src.backup(ctx)
        XCTAssertEqual(map.chunks.count, 3)
        XCTAssertNoThrow(try src.verify(ctx, map: map))
        XCTAssertEqual(ctx.extraStats["verified_read_back"], .int(3))
    }

    func testVerifyCatchesASourceThatChangedAfterTheBackupPass() throws {
        let img = dir + "/img"
        writeImage(img, size: 9 * 1024 * 1024, seed: 4)
        let job = try makeJob(img)
        let src = FileSource(filename: img)
        // Second backup: its chunks are reused, not written, so verification
        // relies on the recorded hashes of the backup pass.
        let first = try context(job, source: src)
        _ = try src.backup(first)
        try first.writer.makeDurable()
        let ctx = try context(job, source: src)
        let map = try src.backup(ctx)
        XCTAssertTrue(ctx.writer.written.isEmpty)
        let fh = FileHandle(forWritingAtPath: img)!
        try fh.seek(toOffset: 5_000_000)
        fh.write(Data([1, 2, 3]))
        try fh.close()
        XCTAssertThrowsError(try src.verify(ctx, map: map)) { e in
            XCTAssertEqual((e as? BackyError)?.kind, .verification)
            XCTAssertTrue("\(e)".contains("offset 4194304"), "\(e)")
        }
    }

    func testVerifyCatchesAChunkFileThatDoesNotReadBack() throws {
        let img = dir + "/img"
        writeImage(img, size: 8 * 1024 * 1024, seed: 5)
        let job = try makeJob(img)
        let src = FileSource(filename: img)
        let ctx = try context(job, source: src)
        let map = try src.backup(ctx)
        try ctx.writer.finishCommits()  // the files are in place
        let victim = job.store.path(map.chunks[1])
        chmod(victim, 0o644)
        let fh = FileHandle(forWritingAtPath: victim)!
        try fh.seek(toOffset: 1000)
        fh.write(Data([0xde, 0xad]))
        try fh.close()
        XCTAssertThrowsError(try src.verify(ctx, map: map)) { e in
            XCTAssertTrue("\(e)".contains("does not read back") || "\(e)".contains("differ"), "\(e)")
        }
    }

    func testHolesAreFoundWithoutReading() throws {
        let img = dir + "/img"
        _ = FileManager.default.createFile(atPath: img, contents: nil)
        let fh = FileHandle(forWritingAtPath: img)!
        try fh.truncate(atOffset: 40 * 1024 * 1024)
        try fh.seek(toOffset: 20 * 1024 * 1024 + 5)
        fh.write(Data([7]))
        try fh.close()
        let fd = open(img, O_RDONLY)
        defer { close(fd) }
        let data = FileSource.dataChunks(fd: fd, size: 40 * 1024 * 1024, chunkSize: 4 * 1024 * 1024, regular: true)
        XCTAssertEqual(data.count, 10)
        XCTAssertEqual(data.enumerated().filter { $0.element }.map { $0.offset }, [5])
    }

    /// A source whose verification always fails.
    final class LyingSource: BackupSource {
        let typeName = "test"
        let inner: FileSource
        init(_ f: String) { inner = FileSource(filename: f) }
        func ready() throws {}
        func backup(_ ctx: BackupContext) throws -> ChunkMap { try inner.backup(ctx) }
        func verify(_ ctx: BackupContext, map: ChunkMap) throws {
            throw BackyError(.verification, "verification failed: test")
        }
    }

    func testFailedVerificationRemovesTheRevisionAndThrows() throws {
        let img = dir + "/img"
        writeImage(img, size: 5 * 1024 * 1024, seed: 6)
        let job = try makeJob(img)
        _ = try BackupRun.run(job: job, tags: ["daily"], log: Logger(label: "test"))
        XCTAssertEqual(try job.scan().count, 1)
        XCTAssertThrowsError(try BackupRun.run(job: job, tags: ["daily"], log: Logger(label: "test"), source: LyingSource(img))) { e in
            XCTAssertEqual((e as? BackyError)?.kind, .verification)
        }
        let revs = try job.scan()
        XCTAssertEqual(revs.count, 1, "the failed revision is gone")
        XCTAssertTrue(revs[0].isComplete)
        let maps = try FileManager.default.contentsOfDirectory(atPath: job.path).filter { $0.hasSuffix(".map") }
        XCTAssertEqual(maps, [revs[0].id + ".map"])
    }
}
