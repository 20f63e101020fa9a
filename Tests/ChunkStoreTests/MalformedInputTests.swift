// MalformedInputTests: decoders of files someone else may have written
// throw on damage and never trap or allocate for what a header claims:
// chunk maps with absurd sizes, backy 2.4 JSON maps, timestamps out of
// range, revision ids that are not ids, YAML aliases and deep nesting,
// oversized files, the verified index; plus the small helpers that keep
// paths safe (temp file names, LZO's worst case).
import Foundation
import XCTest
@testable import ChunkStore

final class MalformedInputTests: XCTestCase {
    func tempDir() -> String {
        let d = NSTemporaryDirectory() + "/backy-malformed-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    func testChunkCountNeverOverflows() {
        XCTAssertEqual(ChunkMap.chunkCount(UInt64.max, 4 << 20), 1 << 42)
        XCTAssertEqual(ChunkMap.chunkCount(0, 4 << 20), 0)
        XCTAssertEqual(ChunkMap.chunkCount(4 << 20, 4 << 20), 1)
        XCTAssertEqual(ChunkMap.chunkCount((4 << 20) + 1, 4 << 20), 2)
    }

    func testMapHeadersClaimingTooMuchAreRefused() throws {
        let good = ChunkMap(imageSize: 10 << 20, chunks: [ChunkID](repeating: .zero, count: 3)).encode()
        XCTAssertEqual(try ChunkMap.decode(good).chunks.count, 3)
        func patched(size: UInt64? = nil, count: UInt64? = nil, cs: UInt32? = nil) -> [UInt8] {
            var b = good
            b.withUnsafeMutableBytes { p in
                if let size { p.storeBytes(of: size.littleEndian, toByteOffset: 16, as: UInt64.self) }
                if let count { p.storeBytes(of: count.littleEndian, toByteOffset: 24, as: UInt64.self) }
                if let cs { p.storeBytes(of: cs.littleEndian, toByteOffset: 12, as: UInt32.self) }
            }
            return b
        }
        let cases: [[UInt8]] = [
            patched(size: UInt64.max), patched(size: UInt64.max, count: 1 << 42),
            patched(size: 1 << 62, count: 1 << 40), patched(count: UInt64.max),
            patched(cs: 0), patched(cs: 1 << 31), patched(cs: 513), patched(cs: 8 << 20),
        ]
        for (k, b) in cases.enumerated() {
            XCTAssertThrowsError(try ChunkMap.decode(b), "case \(k)") { e in
                XCTAssertEqual((e as? BackyError)?.kind, .corrupt, "case \(k): \(e)")
            }
        }
        // From a file: the header is checked against the file's size before
        // anything is allocated.
        let d = tempDir()
        let p = d + "/x.map"
        try Data(patched(size: 1 << 62, count: 1 << 40)).write(to: URL(fileURLWithPath: p))
        XCTAssertThrowsError(try ChunkMap.read(path: p)) { XCTAssertTrue("\($0)".contains("expected 35184372088896"), "\($0)") }
        XCTAssertThrowsError(try ChunkMap.readHeader(path: p))
        XCTAssertThrowsError(try ChunkMap.read(path: d + "/missing.map")) { e in
            XCTAssertEqual((e as? BackyError)?.kind, .notFound)
            XCTAssertTrue((e as? BackyError)?.isNoSuchFile ?? false)
        }
        try FileManager.default.createDirectory(atPath: d + "/dir.map", withIntermediateDirectories: false)
        XCTAssertThrowsError(try ChunkMap.read(path: d + "/dir.map")) { e in
            XCTAssertNotEqual((e as? BackyError)?.kind, .notFound, "a directory is not an absent map")
        }
    }

    func testLegacyMapsWithAbsurdSizesAreRefused() {
        func parse(_ s: String) throws -> LegacyMap { try LegacyMap.parse(Array(s.utf8), path: "m") }
        XCTAssertEqual(try parse(#"{"mapping": {"0": "c01b5d75bfe6a1fa5bca6e492c5ab09a"}, "size": 4194304}"#).chunkCount, 1)
        for s in [#"{"mapping": {}, "size": 1e300}"#, #"{"mapping": {}, "size": 18446744073709551615}"#,
                  #"{"mapping": {}, "size": -1}"#, #"{"mapping": {}, "size": 1.5}"#,
                  #"{"mapping": {"0": "c01b5d75bfe6a1fa5bca6e492c5ab09a"}, "size": 9223372036854775807}"#,
                  #"{"mapping": {"0": "../../../../etc/passwd0000000000"}, "size": 1}"#] {
            XCTAssertThrowsError(try parse(s), s)
        }
    }

    func testTimestampsOutOfRangeNeverTrap() throws {
        for t in [1e300, -1e300, 9.3e18, -9.3e18, .infinity, .nan, 1e18] {
            let s = Timestamp.format(Date(timeIntervalSince1970: t))
            XCTAssertEqual(s.count, 25, "\(t) formats as a clamped date: \(s)")
        }
        for ts in ["1e300", "1e18", "9223372036854775807", "-9223372036854775807", "'99999-01-01'", ".inf"] {
            let text = "uuid: VNzWKjnMqd6w58nzJwUZ98\ntimestamp: \(ts)\nstats: {duration: 1}\n"
            XCTAssertThrowsError(try Revision.parse(text, path: "r"), ts) { e in
                XCTAssertEqual((e as? BackyError)?.kind, .corrupt, "\(ts): \(e)")
            }
        }
        XCTAssertNoThrow(try Revision.parse("uuid: VNzWKjnMqd6w58nzJwUZ98\ntimestamp: 1566000000.5\n", path: "r"))
    }

    func testOnlyRevisionIDsBecomePaths() throws {
        for ok in ["VNzWKjnMqd6w58nzJwUZ98", "2222222222222222222222", "0c3b6a7e-3d1b-4b8c-9a56-1f0e2d3c4b5a".uppercased(),
                   "0c3b6a7e-3d1b-4b8c-9a56-1f0e2d3c4b5a"] {
            XCTAssertTrue(RevisionID.isWellFormed(ok), ok)
        }
        for bad in ["config", "chunks", "x.y", "z.z", "", ".", "..", "../../etc/passwd", "VNzWKjnMqd6w58nzJwUZ9/",
                    "VNzWKjnMqd6w58nzJwUZ9l", "VNzWKjnMqd6w58nzJwUZ9", "0c3b6a7e-3d1b-4b8c-9a56-1f0e2d3c4b5g",
                    "0c3b6a7e_3d1b-4b8c-9a56-1f0e2d3c4b5a", "VNzWKjnMqd6w58nzJwUZ98\n"] {
            XCTAssertFalse(RevisionID.isWellFormed(bad), bad)
        }
        for _ in 0..<1000 { XCTAssertTrue(RevisionID.isWellFormed(RevisionID.make())) }
        // Removing a revision with a bad id throws; it never traps.
        let d = tempDir()
        let job = try Job.initialize(path: d + "/job", source: YAMLMap([("filename", .string("/dev/null")), ("type", .string("file"))]))
        XCTAssertThrowsError(try job.removeRevision("x.y"))
        XCTAssertThrowsError(try job.removeRevision("config"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: d + "/job/config"))
    }

    func testTempFileNamesOfMetadataWriters() {
        XCTAssertEqual(Job.tempFileWriter(".last.tmp-1234"), 1234)
        XCTAssertEqual(Job.tempFileWriter(".last.rev.tmp-77"), 77)
        XCTAssertEqual(Job.tempFileWriter("VNzWKjnMqd6w58nzJwUZ98.rev.tmp-4321-3344556677"), 4321)
        for n in ["notes.tmp-later", "x.tmp-", "x.tmp-12-", "x.tmp-12-ab", "x.tmp--5", "config", "x.tmp-1-2-3"] {
            XCTAssertNil(Job.tempFileWriter(n), n)
        }
    }

    func testYAMLAnchorsAliasesAndDeepNestingAreRefusedFast() {
        var bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n"
        var prev = "a"
        for k in 0..<12 {
            bomb += "b\(k): &b\(k) [*\(prev), *\(prev), *\(prev), *\(prev), *\(prev), *\(prev), *\(prev), *\(prev), *\(prev)]\n"
            prev = "b\(k)"
        }
        let start = Date()
        XCTAssertThrowsError(try YAML.parse(bomb, source: "bomb")) {
            XCTAssertEqual("\($0)", "bomb: line 1: YAML anchors (&name) are not supported")
        }
        XCTAssertThrowsError(try YAML.parse("x: *y\n", source: "s")) {
            XCTAssertEqual("\($0)", "s: line 1: YAML aliases (*name) are not supported")
        }
        XCTAssertThrowsError(try YAML.parse("k: 1\n? &k [a]\n: 2\n", source: "s"))
        let deeper = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        XCTAssertThrowsError(try YAML.parse(deeper, source: "d")) {
            XCTAssertEqual("\($0)", "d: line 1: collections nested deeper than 64 levels")
        }
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        XCTAssertThrowsError(try YAML.parse(deep, source: "d")) {
            XCTAssertEqual("\($0)", "d: line 1: collections nested deeper than 64 levels")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 2)
        // Ordinary documents, and '&' and '*' inside scalars, still parse.
        XCTAssertEqual(try YAML.parse("a: 'x & y'\nb: c*d\nc: [1, 2]\n").map?["b"], .string("c*d"))
        XCTAssertEqual(try YAML.parse(String(repeating: "[", count: 64) + String(repeating: "]", count: 64)).list?.count, 1)
    }

    func testFilesReadWholeAreCappedAndMustBeRegular() throws {
        let d = tempDir()
        try Data(repeating: 0x61, count: 2000).write(to: URL(fileURLWithPath: d + "/big"))
        XCTAssertEqual(try Posix.readFile(d + "/big", limit: 2000).count, 2000)
        XCTAssertThrowsError(try Posix.readFile(d + "/big", limit: 1999)) {
            XCTAssertTrue("\($0)".contains("is larger than 1.95 kiB (1999 bytes)"), "\($0)")
        }
        XCTAssertThrowsError(try Posix.readFile("/dev/zero", limit: 1 << 20)) {
            XCTAssertTrue("\($0)".contains("is not a regular file"), "\($0)")
        }
        mkfifo(d + "/fifo", 0o644)
        XCTAssertThrowsError(try Posix.readFile(d + "/fifo", limit: 1 << 20))  // at once, not blocking
    }

    func testVerifiedIndexWithAnAbsurdCountIsIgnored() throws {
        let d = tempDir()
        let job = try Job.initialize(path: d + "/job", source: YAMLMap([("filename", .string("/dev/null")), ("type", .string("file"))]))
        var bytes = Array("BKYVRFY1".utf8) + [UInt8](repeating: 0xFF, count: 8) + [UInt8](repeating: 0, count: 24)
        try Data(bytes).write(to: URL(fileURLWithPath: VerifiedIndex.path(job)))
        XCTAssertEqual(try VerifiedIndex.load(job).count, 0)
        bytes.replaceSubrange(8..<16, with: [3, 0, 0, 0, 0, 0, 0, 0])
        try Data(bytes).write(to: URL(fileURLWithPath: VerifiedIndex.path(job)))
        XCTAssertEqual(try VerifiedIndex.load(job).count, 0, "three entries claimed, room for two: ignored")
        // A directory in its place is an error, not an empty index.
        try FileManager.default.removeItem(atPath: VerifiedIndex.path(job))
        try FileManager.default.createDirectory(atPath: VerifiedIndex.path(job), withIntermediateDirectories: false)
        XCTAssertThrowsError(try VerifiedIndex.load(job))
    }

    func testWorkspaceHoldsLZOsWorstCase() {
        XCTAssertEqual(LZO.maxFrameSize(uncompressed: 4 << 20), 4_194_304 + 262_144 + 64 + 3 + 5)
        XCTAssertGreaterThanOrEqual(ChunkWorkspace().file.count, LZO.maxFrameSize(uncompressed: 4 << 20))
    }
}
