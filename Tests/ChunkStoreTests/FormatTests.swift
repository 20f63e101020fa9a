// FormatTests: on-disk formats and small value types: chunk headers, chunk
// maps (and their damage detection), revision files in every shape backy 2.4
// wrote, timestamps, revision ids, revision specs.
import XCTest
@testable import ChunkStore

final class FormatTests: XCTestCase {
    func testChunkHeaderRoundTripAndDamage() {
        let h = ChunkHeader(codec: .zstd, uncompressedLength: 4 << 20, payloadLength: 12345)
        let b = h.bytes
        XCTAssertEqual(Array(b[0..<4]), Array("BKYC".utf8))
        XCTAssertEqual(b[4], 1)
        XCTAssertEqual(b[5], 1)
        XCTAssertEqual(b.withUnsafeBytes { ChunkHeader.decode($0) }, .success(h))
        var bad = b; bad[0] = 0x41
        XCTAssertEqual(bad.withUnsafeBytes { ChunkHeader.decode($0) }, .failure(.corrupt("bad magic")))
        bad = b; bad[5] = 9
        XCTAssertEqual(bad.withUnsafeBytes { ChunkHeader.decode($0) }, .failure(.corrupt("unknown codec 9")))
        XCTAssertEqual(Array(b[0..<10]).withUnsafeBytes { ChunkHeader.decode($0) }, .failure(.truncated("header has 10 of 16 bytes")))
        let raw = ChunkHeader(codec: .raw, uncompressedLength: 10, payloadLength: 11).bytes
        if case .success = raw.withUnsafeBytes({ ChunkHeader.decode($0) }) { XCTFail("raw with wrong length accepted") }
    }

    /// Single-bit flips of a stored chunk file: every flip in the chunk
    /// header and in the zstd frame's magic and header descriptor is found,
    /// each with the fault its place calls for (a header field's own check,
    /// a zstd error or a hash mismatch — never "missing" or an I/O error),
    /// and no flip anywhere gives different content without an error. (A few
    /// bits of a zstd frame, like the window size, do not change what it
    /// decodes to; such a flip leaves the data intact and is not reported.)
    func testBitFlipsOfAChunkFileNeverGiveWrongData() throws {
        let dir = NSTemporaryDirectory() + "/backy-flip-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let store = ChunkStore(root: dir + "/chunks")
        try store.create()
        let ws = ChunkWorkspace()
        // 4 MiB of one repeated line compresses to a few hundred bytes: the
        // headers are a large share of the file.
        let line = Array("lorem ipsum 17 dolor sit amet 12345 consectetur\n".utf8)
        var data = [UInt8]()
        while data.count < 4 << 20 { data += line }
        data = Array(data.prefix(4 << 20))
        let id = data.withUnsafeBytes { ChunkHash.sha256($0) }
        _ = try data.withUnsafeBytes { try store.write(id, data: $0, workspace: ws, tag: "t") }
        let path = store.path(id)
        chmod(path, 0o644)
        let good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertLessThan(good.count, 4096, "compressed")
        XCTAssertEqual(good[5], ChunkCodec.zstd.rawValue)
        XCTAssertNoThrow(try store.read(id, workspace: ws))
        var found = 0, intact = 0
        var kinds: [String: Int] = [:]
        for bit in 0..<(good.count * 8) {
            var bad = good
            bad[bit / 8] ^= UInt8(1 << (bit % 8))
            try Data(bad).write(to: URL(fileURLWithPath: path))
            let n: Int
            do {
                n = try store.read(id, workspace: ws)
            } catch let e as ChunkReadError {
                XCTAssertEqual(e.id, id, "bit \(bit)")
                let kind = Self.faultKind(e.fault)
                kinds[String(kind.prefix { $0 != ":" }), default: 0] += 1
                XCTAssertTrue(Self.expectedFaults(byte: bit / 8).contains(where: { kind.hasPrefix($0) || kind.contains($0) }),
                              "bit \(bit) (byte \(bit / 8)): \(e.fault)")
                found += 1
                continue
            } catch {
                XCTFail("bit \(bit): not a ChunkReadError: \(error)")
                continue
            }
            XCTAssertGreaterThanOrEqual(bit, (ChunkHeader.size + 5) * 8, "flip of header bit \(bit) not found")
            XCTAssertEqual(n, data.count)
            XCTAssertEqual(memcmp(ws.data.baseAddress!, data, n), 0, "bit \(bit): different data without an error")
            intact += 1
        }
        XCTAssertGreaterThan(found, 9 * good.count * 8 / 10, "nearly every flip is found")
        XCTAssertGreaterThan(kinds["hash mismatch", default: 0], 0, "some flips decode to other data: the hash check finds them")
        print("bit flips of a \(good.count)-byte chunk file: \(found) found (\(kinds.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))), \(intact) left the data intact")
    }

    static func faultKind(_ f: ChunkFault) -> String {
        switch f {
        case .missing: return "missing"
        case .truncated: return "truncated"
        case .corrupt(let s): return "corrupt: " + s
        case .hashMismatch: return "hash mismatch"
        case .io: return "io"
        }
    }

    /// The faults a flip in byte `b` of a zstd chunk file may give.
    static func expectedFaults(byte b: Int) -> [String] {
        switch b {
        case 0..<4: return ["corrupt: bad magic"]
        case 4: return ["corrupt: unknown chunk format version"]
        case 5: return ["corrupt: unknown codec", "corrupt: raw chunk with payload"]
        case 6, 7: return ["corrupt: reserved header bytes are not zero"]
        case 8..<12: return ["exceeds the chunk size", "corrupt: decompressed ", "corrupt: zstd: "]  // uncompressed length
        case 12..<16: return ["truncated", "trailing bytes"]                                       // payload length
        default: return ["corrupt: zstd: ", "hash mismatch"]                                       // the zstd frame
        }
    }

    func testChunkMapRoundTripAndChecksum() throws {
        let a = Array("a".utf8).withUnsafeBytes { ChunkHash.sha256($0) }
        let b = Array("b".utf8).withUnsafeBytes { ChunkHash.sha256($0) }
        let m = ChunkMap(imageSize: 3 * 4194304 + 100, chunks: [a, .zero, b, a])
        let bytes = m.encode()
        XCTAssertEqual(bytes.count, 64 + 4 * 32)
        XCTAssertEqual(Array(bytes[0..<8]), Array("BACKYMAP".utf8))
        XCTAssertEqual(try ChunkMap.decode(bytes), m)
        XCTAssertEqual(m.length(of: 3), 100)
        XCTAssertEqual(m.length(of: 0), 4194304)
        XCTAssertEqual(m.distinctChunks, [a, b])
        // Any flipped byte is detected.
        for pos in [9, 13, 17, 25, 40, 64, 100, bytes.count - 1] {
            var bad = bytes
            bad[pos] ^= 0x10
            XCTAssertThrowsError(try ChunkMap.decode(bad), "byte \(pos)")
        }
        XCTAssertThrowsError(try ChunkMap.decode(Array(bytes.dropLast())))
        XCTAssertThrowsError(try ChunkMap.decode(bytes + [0]))
        // Count must match the size.
        let wrong = ChunkMap(imageSize: 10, chunks: [a, b]).encode()
        XCTAssertThrowsError(try ChunkMap.decode(wrong))
        let empty = ChunkMap(imageSize: 0, chunks: [])
        XCTAssertEqual(try ChunkMap.decode(empty.encode()), empty)
    }

    func testTimestampsInEveryShape() {
        let t = Timestamp.date(year: 2019, month: 4, day: 17, hour: 10, minute: 22, second: 51, microsecond: 123456)
        XCTAssertEqual(Timestamp.format(t), "2019-04-17 10:22:51.123456+00:00")
        XCTAssertEqual(Timestamp.format(Timestamp.date(year: 2015, month: 9, day: 1, hour: 7, minute: 6, second: 47)), "2015-09-01 07:06:47+00:00")
        for s in ["2019-04-17 10:22:51.123456+00:00", "2019-04-17T10:22:51.123456Z", "2019-04-17 10:22:51.123456",
                  "2019-04-17T12:22:51.123456+02:00", "2019-04-17 05:22:51.123456-05:00", "2019-04-17t10:22:51.123456z",
                  "2019-04-17 10:22:51.123456 +00:00", "2019-04-17 10:22:51.1234567+00:00"] {
            XCTAssertEqual(Timestamp.parse(s).map(Timestamp.format), "2019-04-17 10:22:51.123456+00:00", s)
        }
        XCTAssertEqual(Timestamp.parse("1441091207.5").map(Timestamp.format), "2015-09-01 07:06:47.500000+00:00")
        XCTAssertEqual(Timestamp.parse("2015-09-01").map(Timestamp.format), "2015-09-01 00:00:00+00:00")
        XCTAssertEqual(Timestamp.parse("2015-09-01 7:06:47").map(Timestamp.format), "2015-09-01 07:06:47+00:00")
        for bad in ["", "yesterday", "2015-13-01", "2015-09-01 25:00:00", "2015-09-01X07:06:47", "2015-09-01 07:06:47+0x"] {
            XCTAssertNil(Timestamp.parse(bad), bad)
        }
        XCTAssertEqual(Timestamp.parseDay("2024-02-29").map(Timestamp.day), "2024-02-29")
        XCTAssertNil(Timestamp.parseDay("2023-02-29"))
        XCTAssertNil(Timestamp.parseDay("x"))
    }

    func testRevisionFileRoundTrip() throws {
        var r = Revision(id: "VNzWKjnMqd6w58nzJwUZ98", timestamp: Timestamp.parse("2019-04-17 10:22:51.123456+00:00")!,
                         parent: "Q5N5Ng5kFzNFVv6FDDDCHi", tags: ["weekly", "daily"])
        r.stats["duration"] = .double(12.345678)
        r.stats["bytes_written"] = .int(4194304)
        let text = r.yaml()
        XCTAssertEqual(text, """
            backend_type: chunked-sha256
            parent: Q5N5Ng5kFzNFVv6FDDDCHi
            stats: {bytes_written: 4194304, duration: 12.345678}
            tags: [daily, weekly]
            timestamp: 2019-04-17 10:22:51.123456+00:00
            trust: trusted
            uuid: VNzWKjnMqd6w58nzJwUZ98

            """)
        let back = try Revision.parse(text, path: "x.rev")
        XCTAssertEqual(back, r)
        XCTAssertTrue(back.isComplete)
    }

    func testRevisionShapesBacky24Wrote() throws {
        // PyYAML 3.11 style with nested flow map and extra keys.
        let a = try Revision.parse("""
            backend_type: chunked
            parent: Q5N5Ng5kFzNFVv6FDDDCHi
            stats:
              bytes_written: 4194304
              ceph-verification: partial
              chunk_stats: {write_full: 3, write_partial: 1}
              duration: 12.345678
            tags: [daily, weekly]
            timestamp: 2019-04-17 10:22:51.123456+00:00
            trust: trusted
            uuid: VNzWKjnMqd6w58nzJwUZ98
            """, path: "a.rev")
        XCTAssertEqual(a.backend, .legacyChunked)
        XCTAssertEqual(a.tags, ["daily", "weekly"])
        XCTAssertEqual(a.duration, 12.345678)
        XCTAssertEqual(a.stats["chunk_stats"]?.map?["write_full"], .int(3))
        // PyYAML 5 block style, naive timestamp, no trust, no backend_type, extra key.
        let b = try Revision.parse("""
            parent: null
            stats:
              bytes_written: 0
            tags:
            - daily
            timestamp: 2015-08-29 00:00:00
            type: full
            uuid: 4c44bdc9-9ba3-4c9f-9e26-1d8e1cbc4cbd
            """, path: "b.rev")
        XCTAssertEqual(b.backend, .cowfile)
        XCTAssertEqual(b.trust, .trusted)
        XCTAssertNil(b.parent)
        XCTAssertFalse(b.isComplete)
        XCTAssertEqual(Timestamp.format(b.timestamp), "2015-08-29 00:00:00+00:00")
        XCTAssertEqual(b.extra["type"], .string("full"))
        XCTAssertTrue(b.yaml().contains("type: full"), "unknown keys are kept")
        // Legacy float timestamp.
        let c = try Revision.parse("uuid: x1\ntimestamp: 1441091207.0\nstats: {bytes_written: 1, duration: 0.5}\n", path: "c.rev")
        XCTAssertEqual(Timestamp.format(c.timestamp), "2015-09-01 07:06:47+00:00")
        XCTAssertThrowsError(try Revision.parse("uuid: x\n", path: "d.rev"))
        XCTAssertThrowsError(try Revision.parse("uuid: x\ntimestamp: 2015-01-01\ntrust: maybe\n", path: "e.rev"))
        XCTAssertThrowsError(try Revision.parse("- a\n- b\n", path: "f.rev"))
    }

    func testYAMLQuotingKeepsStrings() throws {
        for s in ["daily", "manual:foo", "yes", "null", "123", "1.5", "2015-01-01", "a: b", "#x", "[x]", "with space", "",
                  "it's", "-x", "a,b", "ünïcode"] {
            let m = YAMLMap([("k", .string(s))])
            let back = try YAML.parse(YAML.emit(m)).map?["k"]
            XCTAssertEqual(back, .string(s), "'\(s)' as \(YAML.emit(m))")
        }
    }

    /// Line breaks, control characters and YAML's other line breaks (NEL,
    /// U+2028, U+2029) in a string (a double-quoted scalar in a .rev can hold
    /// them) must be written so they read back as they were, as values, keys
    /// and in flow collections. They were written single-quoted, which folds
    /// line breaks or makes the file unreadable (found by fuzz target
    /// `revision`, fuzz/regressions/revision/newlines-in-stats).
    func testYAMLQuotingKeepsLineBreaksAndControlCharacters() throws {
        let strings = ["a\nb", "0.0459\n\n\n1", "\r\n", "x\r", "\n", " lead\n trail ", "x\u{1}y", "\u{0}", "tab\there",
                       "\u{7F}", "\u{85}", "a\u{2028}b\u{2029}", "\u{FEFF}x", "\u{A0}", "😀", "back\\slash\"quote'\n", "ü\n"]
        for s in strings {
            let m = YAMLMap([("k", .string(s)), (s, .list([.string(s)])), ("f", .map(YAMLMap([(s, .string(s))])))])
            let text = YAML.emit(m)
            let back = try XCTUnwrap(YAML.parse(text).map, text)
            XCTAssertEqual(back["k"], .string(s), text)
            XCTAssertEqual(back[s], .list([.string(s)]), text)
            XCTAssertEqual(back["f"], .map(YAMLMap([(s, .string(s))])), text)
        }
        var r = Revision(id: "oiz8B2KLD6x7DxpiYNTiRj", timestamp: Date(timeIntervalSince1970: 1_700_000_000), parent: nil, tags: ["daily"])
        r.stats["duration"] = .string("0.0459461212158203\n\n\n1")
        let again = try Revision.parse(r.yaml(), path: "r.rev")
        XCTAssertEqual(again.stats["duration"], .string("0.0459461212158203\n\n\n1"))
        XCTAssertEqual(again.yaml(), r.yaml())
    }

    /// libyaml reads a simple key only up to 1024 characters. A key that
    /// was short enough when read can be longer once written (200 invalid
    /// UTF-8 bytes read as U+FFFD are 1,200 characters escaped), and a .rev
    /// rewritten by verify or distrust became unreadable (found by fuzz
    /// target `revision` in CI, fuzz/regressions/revision/long-escaped-key).
    /// Long keys are written as explicit keys, in block and flow mappings.
    func testYAMLLongKeysReadBack() throws {
        let keys = [String(repeating: "\u{FFFD}", count: 200), String(repeating: "'", count: 600),
                    String(repeating: "k", count: 1023), String(repeating: "\u{1}", count: 171),
                    String(repeating: "k", count: 5000)]
        // Maps compare in order, and the emitter writes keys sorted.
        func sorted(_ pairs: [(String, YAMLValue)]) -> YAMLMap { YAMLMap(pairs.sorted { $0.0 < $1.0 }) }
        for k in keys {
            let m = sorted([(k, .int(1)), ("f", .map(sorted([(k, .string(k)), ("a", .int(2))]))),
                            ("l", .list([.map(YAMLMap([(k, .list([.int(3), .map(YAMLMap([(k, .null)]))]))]))]))])
            let text = YAML.emit(m)
            let back = try YAML.parse(text).map
            XCTAssertTrue(back == m, "a key of \(k.count) characters did not read back")
        }
        var r = Revision(id: "6cznSTtv4nbtsbiwdYTvQZ", timestamp: Date(timeIntervalSince1970: 1_700_000_000), parent: nil, tags: ["daily"])
        r.stats[String(repeating: "\u{FFFD}", count: 200)] = .double(0.5)
        r.extra[String(repeating: "\u{FFFD}", count: 300)] = .string("x")
        let again = try Revision.parse(r.yaml(), path: "r.rev")
        XCTAssertTrue(again == r, "the revision did not read back")
        XCTAssertTrue(again.yaml() == r.yaml(), "the revision was not written back the same")
    }

    func testRevisionIDs() {
        let id = RevisionID.make()
        XCTAssertEqual(id.count, 22)
        XCTAssertTrue(id.allSatisfy { RevisionID.alphabet.contains($0) })
        XCTAssertNotEqual(RevisionID.make(), RevisionID.make())
        XCTAssertEqual(RevisionID.encode(hi: 0, lo: 0), String(repeating: "2", count: 22))
        XCTAssertEqual(RevisionID.encode(hi: 0, lo: 56), "z" + String(repeating: "2", count: 21))
        XCTAssertEqual(RevisionID.encode(hi: 0, lo: 57), "23" + String(repeating: "2", count: 20))
        XCTAssertEqual(RevisionID.encode(hi: .max, lo: .max).count, 22)
    }

    func testRevisionSpecs() throws {
        func rev(_ id: String, _ t: Double, _ tags: Set<String>, complete: Bool = true) -> Revision {
            var r = Revision(id: id, timestamp: Date(timeIntervalSince1970: t), parent: nil, tags: tags)
            if complete { r.stats["duration"] = .double(1) }
            return r
        }
        let revs = [rev("aaa", 1, ["daily"]), rev("bbb", 2, ["daily", "weekly"]), rev("ccc", 3, ["daily"]),
                    rev("ddd", 4, ["daily"], complete: false)]
        XCTAssertEqual(try Job.find("0", in: revs).id, "ccc", "numbers count complete revisions only")
        XCTAssertEqual(try Job.find("2", in: revs).id, "aaa")
        XCTAssertEqual(try Job.find("last", in: revs).id, "ccc")
        XCTAssertEqual(try Job.find("latest", in: revs).id, "ccc")
        XCTAssertEqual(try Job.find("weekly", in: revs).id, "bbb")
        XCTAssertEqual(try Job.find("daily", in: revs).id, "ccc")
        XCTAssertEqual(try Job.find("ddd", in: revs).id, "ddd", "ids find incomplete ones too")
        for bad in ["3", "-1", "monthly", "", "aa"] {
            XCTAssertThrowsError(try Job.find(bad, in: revs), bad)
        }
        XCTAssertThrowsError(try Job.find("last", in: []))
    }
}
