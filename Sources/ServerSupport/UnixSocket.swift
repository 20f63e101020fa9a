// UnixSocket: listening on a Unix domain socket with a permission model.
// The socket is bound in a fresh private directory beside its path, given
// its mode (0660 by default) and group there, and then renamed into place,
// so no client can ever connect while the permissions are still open. A
// stale socket left by a crashed server is replaced; a path where a server
// still answers, or that is not a socket, is refused.
import Foundation
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

public struct UnixSocketError: Error, CustomStringConvertible {
    public let description: String
    public init(_ s: String) { description = s }
}

public enum UnixSocket {
    /// The longest path a sockaddr_un holds.
    public static let maxPath = 107

    /// The numeric id of a group given by name or number.
    public static func groupID(_ group: String) throws -> gid_t {
        if let n = UInt32(group) { return gid_t(n) }
        var grp = group_t()
        var result: UnsafeMutablePointer<group_t>?
        var buf = [CChar](repeating: 0, count: 16384)
        let rc = getgrnam_r(group, &grp, &buf, buf.count, &result)
        guard rc == 0, let r = result else { throw UnixSocketError("unknown group \(group)") }
        return r.pointee.gr_gid
    }

    /// Whether a server accepts connections on `path`.
    public static func answers(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count <= maxPath else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        } == 0
    }

    /// Binds a listener at `path` with `mode` and `group` (nil: the process's
    /// group). `bind` binds a server channel to the path it is given.
    public static func listen(path: String, mode: mode_t = 0o660, group: String?,
                              bind: (String) throws -> Channel) throws -> Channel {
        guard path.hasPrefix("/") else { throw UnixSocketError("socket path \(path) must be absolute") }
        let dir = (path as NSString).deletingLastPathComponent
        guard path.utf8.count <= maxPath - 20 else { throw UnixSocketError("socket path \(path) is too long") }
        let gid = try group.map(groupID)
        var st = stat()
        if lstat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFSOCK else {
                throw UnixSocketError("\(path) exists and is not a socket")
            }
            if answers(path) { throw UnixSocketError("another server is listening on \(path)") }
            unlink(path)
        }
        var template = Array((dir + "/.backy-socket-XXXXXX").utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw UnixSocketError("cannot create a directory in \(dir): \(String(cString: strerror(errno)))")
        }
        let tmpDir = String(cString: template)
        let tmp = tmpDir + "/s"
        defer {
            unlink(tmp)
            rmdir(tmpDir)
        }
        let ch = try bind(tmp)
        do {
            if chmod(tmp, mode) != 0 {
                throw UnixSocketError("cannot set the mode of \(path): \(String(cString: strerror(errno)))")
            }
            if let gid, chown(tmp, uid_t.max, gid) != 0 {
                throw UnixSocketError("cannot give \(path) to group \(group!): \(String(cString: strerror(errno)))")
            }
            if rename(tmp, path) != 0 {
                throw UnixSocketError("cannot create \(path): \(String(cString: strerror(errno)))")
            }
        } catch {
            try? ch.close().wait()
            throw error
        }
        return ch
    }

    /// Removes the socket file if it is (still) a socket.
    public static func remove(_ path: String) {
        var st = stat()
        if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
    }
}

#if canImport(Glibc)
typealias group_t = group
#endif
