// RadosStoredObject: a RADOS object opened for reading, as the StoredObject
// the layers above the storage seam read from. Opening is one round trip
// that stats the object and reads its first 64 KiB together (a chunk's
// header, a small chunk or a map whole); later reads beyond that go to the
// OSD straight into the caller's buffer. The size is the size at open: an
// object replaced meanwhile (write_full) is read as it is now, and the
// decoders' checks (lengths, checksums, SHA-256) catch a mix.
import Foundation
import Rados
#if canImport(Glibc)
import Glibc
#endif

final class RadosStoredObject: StoredObject {
    static let prefetchSize = 64 << 10

    let io: RadosIoctx
    let oid: String
    let size: Int
    var isPlain: Bool { true }
    private let head: [UInt8]

    private init(io: RadosIoctx, oid: String, size: Int, head: [UInt8]) {
        self.io = io
        self.oid = oid
        self.size = size
        self.head = head
    }

    /// Opens `oid`; nil if it does not exist.
    static func open(_ io: RadosIoctx, _ oid: String) throws -> RadosStoredObject? {
        var head = [UInt8](repeating: 0, count: prefetchSize)
        let got = try head.withUnsafeMutableBytes { try io.read(oid, into: $0) }
        guard let got else { return nil }
        head.removeSubrange(got.count...)
        return RadosStoredObject(io: io, oid: oid, size: Int(got.size), head: head)
    }

    func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int) throws -> Int {
        guard count > 0, offset < size else { return 0 }
        let want = min(count, size - offset)
        var done = 0
        if offset < head.count {
            let n = min(want, head.count - offset)
            head.withUnsafeBytes { h in buffer.copyMemory(from: h.baseAddress! + offset, byteCount: n) }
            done = n
        }
        while done < want {
            let r = io.readAt(oid, into: UnsafeMutableRawBufferPointer(start: buffer + done, count: want - done), offset: UInt64(offset + done))
            if r < 0 { throw BackyError(.io, "cannot read \(io.describe(oid)): \(RadosError.text(-r))", errno: -r) }
            if r == 0 { break }
            done += Int(r)
        }
        return done
    }
}
