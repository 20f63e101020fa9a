// RevisionFS: the read-only FUSE filesystem of one revision (libfuse3's
// high-level API, multi-threaded loop). Its root holds byte-range views of
// the image (disk.raw, partN.raw), small text files (partitions.txt,
// .backy-mount) and empty directories on which the partitions' filesystems
// are mounted. The entries can change while it is mounted (the partition
// table is read through disk.raw after the mount). libfuse calls C function
// pointers: they find this object through fuse_get_context()->private_data.
import CFuse3
import ChunkStore
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

// @unchecked Sendable: entries are changed only under `lock`; the libfuse handle, argv and loop thread are set before the FUSE loop starts and torn down after it ended (`loopDone`).
public final class RevisionFS: @unchecked Sendable {
    public enum Node: Equatable {
        /// Bytes [offset, offset + size) of the image.
        case view(offset: UInt64, size: UInt64)
        case text([UInt8])
        case directory
    }

    private struct Entry {
        var name: String
        var node: Node
        var present: Bool
    }

    public let cache: ChunkLRU
    let log: Logger
    private let time: timespec
    private let lock = NSLock()
    /// Entries never move (open files keep their index as file handle);
    /// removed ones are marked absent.
    private var entries: [Entry] = []
    private var byName: [String: Int] = [:]

    private var fuse: OpaquePointer?
    private var ops = fuse_operations()
    private var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
    private var argc: Int32 = 0
    private var loop: Thread?
    private let loopDone = NSCondition()
    private var loopFinished = false
    public private(set) var mountpoint: String?
    /// The FUSE connection number (minor device number of the mount).
    private var connection: UInt32?

    public init(cache: ChunkLRU, time: Date, log: Logger) {
        self.cache = cache
        self.log = log
        let secs = time.timeIntervalSince1970
        self.time = timespec(tv_sec: Int(secs.rounded(.down)), tv_nsec: Int((secs - secs.rounded(.down)) * 1e9))
    }

    deinit {
        if let argv {
            for k in 0..<Int(argc) { free(argv[k]) }
            argv.deallocate()
        }
    }

    // MARK: entries

    /// Adds, replaces or (with nil) removes an entry of the root directory.
    public func set(_ name: String, _ node: Node?) {
        lock.lock(); defer { lock.unlock() }
        if let i = byName[name] {
            if let node {
                entries[i].node = node
                entries[i].present = true
            } else {
                entries[i].present = false
            }
        } else if let node {
            byName[name] = entries.count
            entries.append(Entry(name: name, node: node, present: true))
        }
    }

    public var names: [String] {
        lock.lock(); defer { lock.unlock() }
        return entries.filter { $0.present }.map { $0.name }.sorted()
    }

    private func lookup(_ path: UnsafePointer<CChar>?) -> (index: Int, node: Node)? {
        guard let path, path[0] == 0x2F else { return nil }
        let name = String(cString: path + 1)
        lock.lock(); defer { lock.unlock() }
        guard let i = byName[name], entries[i].present else { return nil }
        return (i, entries[i].node)
    }

    private func node(at index: Int) -> Node? {
        lock.lock(); defer { lock.unlock() }
        guard index >= 0, index < entries.count else { return nil }
        return entries[index].node
    }

    // MARK: callbacks

    private static func current() -> RevisionFS? {
        guard let p = backy_fuse_private_data() else { return nil }
        return Unmanaged<RevisionFS>.fromOpaque(p).takeUnretainedValue()
    }

    private func fill(_ st: UnsafeMutablePointer<stat>, _ node: Node?) {
        memset(st, 0, MemoryLayout<stat>.size)
        st.pointee.st_uid = getuid()
        st.pointee.st_gid = getgid()
        st.pointee.st_atim = time
        st.pointee.st_mtim = time
        st.pointee.st_ctim = time
        st.pointee.st_blksize = 4096
        switch node {
        case nil, .directory?:
            st.pointee.st_mode = S_IFDIR | 0o555
            st.pointee.st_nlink = 2
        case .view(_, let size)?:
            st.pointee.st_mode = S_IFREG | 0o444
            st.pointee.st_nlink = 1
            st.pointee.st_size = Int(size)
            st.pointee.st_blocks = Int((size + 511) / 512)
        case .text(let bytes)?:
            st.pointee.st_mode = S_IFREG | 0o444
            st.pointee.st_nlink = 1
            st.pointee.st_size = bytes.count
            st.pointee.st_blocks = (bytes.count + 511) / 512
        }
    }

    private static let getattr: @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<stat>?,
                                                UnsafeMutablePointer<fuse_file_info>?) -> Int32 = { path, st, _ in
        guard let fs = current(), let path, let st else { return -EIO }
        if strcmp(path, "/") == 0 {
            fs.fill(st, nil)
            return 0
        }
        guard let (_, node) = fs.lookup(path) else { return -ENOENT }
        fs.fill(st, node)
        return 0
    }

    private static let readdir: @convention(c) (UnsafePointer<CChar>?, UnsafeMutableRawPointer?, fuse_fill_dir_t?, off_t,
                                                UnsafeMutablePointer<fuse_file_info>?, fuse_readdir_flags) -> Int32 = { path, buf, filler, _, _, _ in
        guard let fs = current(), let path, let filler else { return -EIO }
        if strcmp(path, "/") != 0 {
            guard let (_, node) = fs.lookup(path) else { return -ENOENT }
            guard node == .directory else { return -ENOTDIR }
            _ = filler(buf, ".", nil, 0, fuse_fill_dir_flags(0))
            _ = filler(buf, "..", nil, 0, fuse_fill_dir_flags(0))
            return 0
        }
        _ = filler(buf, ".", nil, 0, fuse_fill_dir_flags(0))
        _ = filler(buf, "..", nil, 0, fuse_fill_dir_flags(0))
        for name in fs.names {
            if filler(buf, name, nil, 0, fuse_fill_dir_flags(0)) != 0 { break }
        }
        return 0
    }

    private static let open: @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<fuse_file_info>?) -> Int32 = { path, fi in
        guard let fs = current(), let fi else { return -EIO }
        guard let (index, node) = fs.lookup(path) else { return -ENOENT }
        if fi.pointee.flags & O_ACCMODE != O_RDONLY { return -EROFS }
        switch node {
        case .directory: return -EISDIR
        case .view:
            // The image never changes: keep its pages across opens.
            fi.pointee.keep_cache = 1
        case .text:
            // Text files change as the mount comes up: always ask.
            fi.pointee.direct_io = 1
        }
        // No FLUSH on close: nothing is ever written, and a dying backy that
        // closes a view must not wait for an answer from its own (dead) loop.
        fi.pointee.noflush = 1
        fi.pointee.fh = UInt64(index)
        return 0
    }

    private static let read: @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, Int, off_t,
                                             UnsafeMutablePointer<fuse_file_info>?) -> Int32 = { _, buf, size, off, fi in
        guard let fs = current(), let buf, let fi, off >= 0 else { return -EIO }
        guard let node = fs.node(at: Int(fi.pointee.fh)) else { return -EBADF }
        switch node {
        case .directory:
            return -EISDIR
        case .text(let bytes):
            guard off < bytes.count else { return 0 }
            let n = min(size, bytes.count - Int(off))
            _ = bytes.withUnsafeBytes { memcpy(buf, $0.baseAddress! + Int(off), n) }
            return Int32(n)
        case .view(let offset, let length):
            guard UInt64(off) < length else { return 0 }
            let n = Int(min(UInt64(size), length - UInt64(off)))
            do {
                return Int32(try fs.cache.read(into: UnsafeMutableRawPointer(buf), count: n, at: offset + UInt64(off)))
            } catch {
                return -EIO
            }
        }
    }

    private static let statfs: @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<statvfs>?) -> Int32 = { _, st in
        guard let fs = current(), let st else { return -EIO }
        memset(st, 0, MemoryLayout<statvfs>.size)
        st.pointee.f_bsize = 4096
        st.pointee.f_frsize = 4096
        st.pointee.f_blocks = fsblkcnt_t((fs.cache.image.imageSize + 4095) / 4096)
        st.pointee.f_files = fsfilcnt_t(fs.names.count + 1)
        st.pointee.f_namemax = 255
        return 0
    }

    private static let initialize: @convention(c) (UnsafeMutablePointer<fuse_conn_info>?,
                                                   UnsafeMutablePointer<fuse_config>?) -> UnsafeMutableRawPointer? = { _, cfg in
        if let cfg {
            cfg.pointee.kernel_cache = 1
            cfg.pointee.entry_timeout = 1
            cfg.pointee.attr_timeout = 1
            cfg.pointee.negative_timeout = 0
        }
        return backy_fuse_private_data()
    }

    // MARK: mounting

    /// Mounts at `path` and starts serving on `threads` threads.
    /// `name` shows in the mount table (fsname).
    public func mount(at path: String, name: String, threads: Int = 8) throws {
        ops.getattr = RevisionFS.getattr
        ops.readdir = RevisionFS.readdir
        ops.open = RevisionFS.open
        ops.read = RevisionFS.read
        ops.statfs = RevisionFS.statfs
        ops.`init` = RevisionFS.initialize
        let safeName = String(name.map { $0.isLetter || $0.isNumber || "-_.:/".contains($0) ? $0 : "_" })
        let words = ["backy", "-o", "ro,default_permissions,subtype=backy,fsname=\(safeName)"]
        let a = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: words.count + 1)
        for (k, w) in words.enumerated() { a[k] = strdup(w) }
        a[words.count] = nil
        argv = a
        argc = Int32(words.count)
        var args = fuse_args(argc: argc, argv: a, allocated: 0)
        let me = Unmanaged.passUnretained(self).toOpaque()
        guard let f = backy_fuse_new(&args, &ops, me) else {
            fuse_opt_free_args(&args)
            throw BackyError(.other, "cannot set up a FUSE filesystem (libfuse3 refused the options)")
        }
        fuse_opt_free_args(&args)
        guard fuse_mount(f, path) == 0 else {
            fuse_destroy(f)
            throw BackyError(.io, "cannot mount a FUSE filesystem at \(path) (is /dev/fuse usable? see the messages above)")
        }
        fuse = f
        mountpoint = path
        let t = Thread { [self] in
            guard let f = fuse else { return }
            let rc = backy_fuse_loop_mt(f, UInt32(max(2, threads)), 2)
            if rc != 0 { log.debug("FUSE loop for \(path) ended with \(rc)") }
            loopDone.lock()
            loopFinished = true
            loopDone.broadcast()
            loopDone.unlock()
        }
        t.name = "backy-fuse"
        t.stackSize = 1 << 20
        loop = t
        t.start()
        // Served by the loop from here on.
        var st = stat()
        if stat(path, &st) == 0 {
            let minor = UInt32(truncatingIfNeeded: (st.st_dev & 0xff) | ((st.st_dev >> 12) & 0xffff_ff00))
            connection = minor
            // The kernel reads ahead 128 KiB on a FUSE mount, one request
            // at a time; 4 MiB (a chunk) keeps several 1 MiB requests in
            // flight for a sequential reader. Only root may; a no-op else.
            let fd = Glibc.open("/sys/class/bdi/0:\(minor)/read_ahead_kb", O_WRONLY | O_CLOEXEC)
            if fd >= 0 {
                _ = Glibc.write(fd, "4096", 4)
                Glibc.close(fd)
            }
        }
    }

    /// True while the FUSE loop runs (it ends when the filesystem is unmounted).
    public var isServing: Bool {
        loopDone.lock(); defer { loopDone.unlock() }
        return loop != nil && !loopFinished
    }

    /// Waits up to `seconds` for the loop to end; returns whether it did.
    public func waitForLoop(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        loopDone.lock(); defer { loopDone.unlock() }
        while !loopFinished {
            if !loopDone.wait(until: deadline) { return loopFinished }
        }
        return true
    }

    /// Unmounts (lazily if busy), waits for the loop to end, aborting the
    /// connection if it lingers, and frees libfuse's state.
    public func unmount() {
        guard let f = fuse, let path = mountpoint else { return }
        if isServing {
            if !MountTable.unmount(path, lazy: false) { _ = MountTable.unmount(path, lazy: true) }
            if !waitForLoop(seconds: 5) {
                abortConnection()
                _ = waitForLoop(seconds: 5)
            }
        }
        if waitForLoop(seconds: 0) {
            fuse_destroy(f)
        }
        fuse = nil
    }

    /// Ends the FUSE connection at once (fusectl's abort): every request in
    /// flight fails and the loop ends.
    public func abortConnection() {
        guard let c = connection else { return }
        let p = "/sys/fs/fuse/connections/\(c)/abort"
        let fd = Glibc.open(p, O_WRONLY | O_CLOEXEC)
        if fd >= 0 {
            _ = Glibc.write(fd, "1", 1)
            Glibc.close(fd)
        }
    }
}
