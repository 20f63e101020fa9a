// NBDFuzzTests: random and mutated handshakes and requests against the
// server in this process, and against the `backy nbd-server` binary serving
// a real job with the same two images (tags "a" and "b"; b's chunk file
// damaged). The server must never crash or hang, every well-formed request
// must get a well-formed and correct reply, and no chunk outside an export
// may ever be read. BACKY_NBD_FUZZ sets the number of cases (default 3000,
// a fifth of that against the binary; bench/nbd-fuzz runs 100,000),
// BACKY_NBD_FUZZ_SEED the seed (default fixed, so CI is reproducible).
import ChunkStore
import Foundation
import NBDServer
import TestSupport
import XCTest

final class NBDFuzzTests: XCTestCase {
    let cs = 65536
    lazy var imgA = MemoryImage(size: 16 * cs + 3 * 512, zeroChunks: [1, 2, 7], seed: 11)
    lazy var imgB = MemoryImage(size: 6 * cs, zeroChunks: [0], damaged: [4], seed: 12)
    lazy var exports = MemoryExports([("a", imgA), ("b", imgB)])
    var rng = XorShift(seed: 1)
    /// Fuzzing the binary: b is one damaged 4 MiB backy chunk, not imgB's
    /// small chunks.
    var binaryMode = false

    static var cases: Int {
        Int(ProcessInfo.processInfo.environment["BACKY_NBD_FUZZ"] ?? "") ?? 3000
    }

    func r(_ n: Int) -> Int { Int.random(in: 0..<max(1, n), using: &rng) }
    func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }
    func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) } }

    static let interesting: [UInt32] = [0, 1, 2, 3, 7, 8, 9, 10, 11, 512, 4095, 4096, 4097, 65536, 65537,
                                        0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0xFFFF_FFFE, 33_554_432, 33_554_433]

    func name() -> String {
        ["a", "b", "", "latest", "nope", "0", String(repeating: "x", count: r(5000)), "a\u{0}b"][r(8)]
    }

    /// A valid-looking option message.
    func option() -> [UInt8] {
        let code: UInt32
        var data: [UInt8] = []
        switch r(10) {
        case 0: code = NBD.optList
        case 1: code = NBD.optInfo; data = RawClient.infoData(name(), (0..<r(4)).map { _ in UInt16(r(6)) })
        case 2: code = NBD.optGo; data = RawClient.infoData(name(), [NBD.infoBlockSize])
        case 3: code = NBD.optStructuredReply
        case 4: code = NBD.optSetMetaContext; data = RawClient.metaData(name(), ["base:allocation", "base:", "x:y", "bad"].shuffled(using: &rng).prefix(r(4)).map { $0 })
        case 5: code = NBD.optListMetaContext; data = RawClient.metaData(name(), ["base:", "base:allocation"].prefix(r(3)).map { $0 })
        case 6: code = NBD.optExportName; data = Array(name().utf8)
        case 7: code = NBD.optAbort
        case 8: code = UInt32(r(20)); data = bytes(r(40))
        default: code = NBD.optStartTLS
        }
        return u64(NBD.optMagic) + u32(code) + u32(UInt32(data.count)) + data
    }

    func request() -> [UInt8] {
        let type = UInt16(r(12))
        let flags: UInt16 = chance(0.8) ? 0 : UInt16(r(64))
        let off: UInt64 = chance(0.5) ? UInt64(r(20 * cs)) : u64Interesting()
        let len: UInt32 = chance(0.6) ? UInt32(r(3 * cs)) : Self.interesting[r(Self.interesting.count)]
        var m = u32(NBD.requestMagic) + u16(flags) + u16(type) + u64(UInt64(r(1000))) + u64(off) + u32(len)
        if type == NBD.cmdWrite && len < 70000 { m += bytes(Int(len)) }
        return m
    }

    func u64Interesting() -> UInt64 {
        [0, 1, UInt64(imgA.imageSize), UInt64(imgA.imageSize) - 512, UInt64(imgB.imageSize), UInt64.max, UInt64.max - 511, 1 << 63][r(8)]
    }

    func mutate(_ m: inout [UInt8]) {
        for _ in 0...r(4) {
            guard !m.isEmpty else { m = bytes(r(64)); continue }
            switch r(6) {
            case 0: let i = r(m.count); m[i] ^= 1 << UInt8(r(8))
            case 1: m[r(m.count)] = UInt8(r(256))
            case 2: m.insert(contentsOf: bytes(1 + r(16)), at: r(m.count + 1))
            case 3: let i = r(m.count); m.removeSubrange(i..<min(m.count, i + 1 + r(16)))
            case 4:
                if m.count >= 4 {
                    let i = r(m.count - 3)
                    m.replaceSubrange(i..<(i + 4), with: u32(Self.interesting[r(Self.interesting.count)]))
                }
            default: m.removeLast(r(m.count))
            }
        }
    }

    /// Sends everything, half-closes, and expects the server to finish and close.
    func sendAndExpectClose(_ port: Int, _ msg: [UInt8], greet: Bool) throws -> Bool {
        let c = try XCTUnwrap(RawClient(port: port, timeout: 10))
        if greet { _ = c.recv(18) }
        c.send(msg)
        c.shutdownWrite()
        return c.drain().eof
    }

    /// One session of well-formed negotiation followed by random requests,
    /// checking every reply.
    func transmissionCase(_ port: Int) throws {
        let c = try XCTUnwrap(RawClient(port: port, timeout: 10))
        let useB = chance(0.3)
        let img = useB ? imgB : imgA
        let structured = chance(0.7)
        guard let ex = c.go(useB ? "b" : "a", structured: structured, meta: structured && chance(0.8)) else {
            return XCTFail("negotiation failed")
        }
        XCTAssertEqual(ex.size, img.imageSize)
        for _ in 0..<(1 + r(12)) {
            let m = request()
            let type = be16(m, 6), flags = be16(m, 4), handle = be64(m, 8), off = be64(m, 16), len = be32(m, 24)
            c.send(m)
            if type == NBD.cmdDisc {
                XCTAssertTrue(c.drain().eof)
                return
            }
            if type == NBD.cmdWrite && len >= 70000 {
                // The server skips a payload we will not send: end here.
                c.shutdownWrite()
                XCTAssertTrue(c.drain().eof)
                return
            }
            let fits = off.addingReportingOverflow(UInt64(len)).overflow == false && off + UInt64(len) <= img.imageSize
            let isRead = type == NBD.cmdRead
            let rl: [UInt64: (offset: UInt64, length: Int)] = isRead && fits && len <= 32 << 20 ? [handle: (off, Int(len))] : [:]
            guard let rep = c.reply(readLengths: rl) else {
                return XCTFail("no well-formed reply to type \(type) flags \(flags) off \(off) len \(len)")
            }
            XCTAssertEqual(rep.handle, handle)
            let allowed = NBDTransmission.allowedFlags(type: type, structured: structured)
            if flags & ~allowed != 0 {
                XCTAssertEqual(rep.error, NBD.EINVAL, "bad flags")
                continue
            }
            switch type {
            case NBD.cmdRead:
                if !fits || len > 32 << 20 {
                    XCTAssertEqual(rep.error, NBD.EINVAL)
                } else {
                    let first = Int(off) / cs, last = len == 0 ? first : (Int(off) + Int(len) - 1) / cs
                    let damaged = len > 0 && (binaryMode ? img === imgB : (first...last).contains { img.damaged.contains($0) })
                    if damaged {
                        XCTAssertEqual(rep.error, NBD.EIO)
                    } else {
                        XCTAssertEqual(rep.error, 0)
                        if rep.error == 0 && len > 0 {
                            XCTAssertTrue(rep.data == Array(img.bytes[Int(off)..<(Int(off) + Int(len))]), "data of \(off)+\(len)")
                        }
                    }
                }
            case NBD.cmdWrite, NBD.cmdTrim, NBD.cmdWriteZeroes:
                XCTAssertEqual(rep.error, NBD.EPERM)
            case NBD.cmdFlush:
                XCTAssertEqual(rep.error, 0)
            case NBD.cmdCache:
                XCTAssertEqual(rep.error, fits && len <= 32 << 20 ? 0 : NBD.EINVAL)
            case NBD.cmdBlockStatus:
                if rep.error == 0 {
                    XCTAssertTrue(fits && len > 0)
                    let total = rep.extents.reduce(UInt64(0)) { $0 + UInt64($1.length) }
                    XCTAssertTrue(total > 0 && total <= UInt64(len))
                    XCTAssertTrue(flags & NBD.cmdFlagReqOne == 0 || rep.extents.count == 1)
                } else {
                    XCTAssertEqual(rep.error, NBD.EINVAL)
                }
            default:
                XCTAssertEqual(rep.error, NBD.EINVAL)
            }
        }
        if chance(0.5) { c.request(NBD.cmdDisc, handle: 0, offset: 0, length: 0) }
    }

    /// Runs `cases` fuzz cases against the server on `port`; returns the
    /// connections it did not finish.
    func fuzz(port: Int, cases: Int, what: String) throws -> Int {
        // A fixed seed in CI (reproducible); bench/nbd-fuzz passes a new one.
        let seed = UInt64(ProcessInfo.processInfo.environment["BACKY_NBD_FUZZ_SEED"] ?? "") ?? 20_261_125
        rng = XorShift(seed: seed)
        print("NBD fuzz of \(what): \(cases) cases, seed \(seed) (replay with BACKY_NBD_FUZZ_SEED=\(seed))")
        var hangs = 0
        for i in 0..<cases {
            switch i % 4 {
            case 0:
                // Pure garbage, sometimes after valid client flags.
                var m = chance(0.5) ? u32(UInt32(r(4))) : []
                m += bytes(r(600))
                if try !sendAndExpectClose(port, m, greet: chance(0.5)) { hangs += 1 }
            case 1, 2:
                // A mutated sequence of plausible options and requests.
                var m = u32(chance(0.9) ? 3 : UInt32(r(8)))
                for _ in 0..<(1 + r(5)) { m += option() }
                for _ in 0..<r(4) { m += request() }
                mutate(&m)
                if try !sendAndExpectClose(port, m, greet: true) { hangs += 1 }
            default:
                try transmissionCase(port)
            }
            if i % 500 == 499 {
                // Still serving correctly.
                let c = try XCTUnwrap(RawClient(port: port))
                XCTAssertNotNil(c.go("a"))
                XCTAssertEqual(c.read(0, 4096)?.data, Array(imgA.bytes[0..<4096]))
            }
            if testRun?.failureCount ?? 0 > 20 { break }
        }
        return hangs
    }

    func testFuzzHandshakesAndRequests() throws {
        let (server, port) = try TestServer.start(self, exports) { $0.cacheChunks = 4 }
        let hangs = try fuzz(port: port, cases: Self.cases, what: "the server library")
        XCTAssertEqual(hangs, 0, "connections the server did not finish")
        XCTAssertEqual(imgA.violations.get + imgB.violations.get, [], "reads outside an export")
        // Every connection ends and releases its export.
        XCTAssertTrue(waitUntil(timeout: 10) { server.connectionCount == 0 }, "connections left: \(server.connectionCount)")
        XCTAssertEqual(exports.opened.get, exports.closed.get)
        print("NBD fuzz: done, \(imgA.reads.get + imgB.reads.get) chunk reads")
    }

    /// The same cases against `backy nbd-server`: a job with a revision of
    /// imgA's bytes (tag "a") and one of imgB's (tag "b", so also "latest"),
    /// whose chunk file is then damaged.
    func testFuzzTheNBDServerBinary() throws {
        binaryMode = true
        let backy = try XCTUnwrap(BackyBinary.path, "the backy binary (swift build --build-tests builds it)")
        let dir = NSTemporaryDirectory() + "/backy-nbd-fuzz-\(UUID().uuidString.prefix(8))"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let img = dir + "/disk.img", job = dir + "/job"
        func run(_ args: [String]) throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: backy)
            p.arguments = ["-b", job] + args
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, "backy \(args)")
        }
        try Data(imgA.bytes).write(to: URL(fileURLWithPath: img))
        try run(["init", "file", img])
        try run(["backup", "a"])
        try Data(imgB.bytes).write(to: URL(fileURLWithPath: img))
        try run(["backup", "b"])
        // Damage b's one chunk file (its bytes are random: stored raw).
        let maps = try FileManager.default.contentsOfDirectory(atPath: job).filter { $0.hasSuffix(".map") }
        XCTAssertEqual(maps.count, 2)
        let chunks = try FileManager.default.subpathsOfDirectory(atPath: job + "/chunks").filter { $0.hasSuffix(".chunk") && !$0.hasPrefix(".tmp") }
        XCTAssertEqual(chunks.count, 2)
        let bID = imgB.bytes.withUnsafeBytes { ChunkHash.sha256($0) }.hex
        let victim = try XCTUnwrap(chunks.first { $0.hasSuffix(bID + ".chunk") }, "b's chunk \(bID) in \(chunks)")
        chmod(job + "/chunks/" + victim, 0o644)
        let fh = try XCTUnwrap(FileHandle(forUpdatingAtPath: job + "/chunks/" + victim))
        try fh.seek(toOffset: 1000)
        let byte = try XCTUnwrap(fh.readData(ofLength: 1).first)
        try fh.seek(toOffset: 1000)
        fh.write(Data([byte ^ 0x20]))
        try fh.close()

        let port = freeTCPPort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: backy)
        server.arguments = ["-b", job, "nbd-server", "-H", "127.0.0.1", "-p", String(port)]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        addTeardownBlock { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        XCTAssertTrue(waitUntil(timeout: 20) { !server.isRunning || RawClient(port: port) != nil }, "nbd-server answers")
        XCTAssertTrue(server.isRunning, "nbd-server runs (port \(port) taken?)")
        let cases = Int(ProcessInfo.processInfo.environment["BACKY_NBD_FUZZ_BINARY"] ?? "") ?? max(1, Self.cases / 5)
        let hangs = try fuzz(port: port, cases: cases, what: "backy nbd-server")
        XCTAssertEqual(hangs, 0, "connections the server did not finish")
        XCTAssertTrue(server.isRunning, "the server survived")
        server.terminate()
        server.waitUntilExit()
        XCTAssertEqual(server.terminationStatus, 0, "SIGTERM stops it cleanly")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: job + "/.pins"), ["gate"], "no pins left")
        print("NBD fuzz of backy nbd-server: done")
    }
}
