// DirectoryFile: a file of a job directory opened for reading, as the
// StoredObject the layers above the storage seam read from: its size and
// type from fstat, positioned reads with pread. Also the directory
// backend's own map-file readers (`ChunkMap.read(path:)`).
import Foundation
#if canImport(Glibc)
import Glibc
#endif

final class DirectoryFile: StoredObject {
    let fd: Int32
    let path: String
    let size: Int
    let isPlain: Bool

    private init(fd: Int32, path: String, size: Int, isPlain: Bool) {
        self.fd = fd
        self.path = path
        self.size = size
        self.isPlain = isPlain
    }

    deinit { Glibc.close(fd) }

    /// Opens `path` for reading without blocking on a FIFO (then clears
    /// O_NONBLOCK for regular files); nil if it does not exist. `what`
    /// names it in the error ("map" → "cannot open map …").
    static func open(_ path: String, noFollow: Bool = false, what: String? = nil) throws -> DirectoryFile? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (noFollow ? O_NOFOLLOW : 0))
        if fd < 0 {
            let e = errno
            if e == ENOENT { return nil }
            throw BackyError.posix("cannot open \(what.map { $0 + " " } ?? "")\(path)", e)
        }
        var st = stat()
        if fstat(fd, &st) != 0 {
            let e = BackyError.posix("cannot stat \(path)")
            Glibc.close(fd)
            throw e
        }
        let regular = (st.st_mode & S_IFMT) == S_IFREG
        if regular { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) }
        return DirectoryFile(fd: fd, path: path, size: Int(st.st_size), isPlain: regular)
    }

    func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int) throws -> Int {
        try Posix.preadFull(fd, buffer, count, Int64(offset), path: path)
    }
}

extension ChunkMap {
    /// Opens a map file; a missing one is `.notFound` with errno ENOENT.
    static func openFile(path: String) throws -> DirectoryFile {
        guard let f = try DirectoryFile.open(path, what: "map") else {
            throw BackyError(.notFound, "\(path): map file is missing", errno: ENOENT)
        }
        return f
    }

    /// Reads only the header of a map file (and checks the file's size
    /// against it).
    public static func readHeader(path: String) throws -> Header {
        try readHeader(from: try openFile(path: path), location: path)
    }

    /// Reads and checks a whole map file.
    public static func read(path: String) throws -> ChunkMap {
        try read(from: try openFile(path: path), location: path)
    }
}
