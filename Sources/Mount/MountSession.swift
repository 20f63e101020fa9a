// MountSession: one revision mounted read-only at a directory, from start to
// end. The order of starting: a watchdog (so a kill at any later moment is
// undone), the revision's FUSE filesystem with disk.raw, the partition table
// read through disk.raw by libblkid, partN.raw views, then each volume's
// files on partN/ (or disk/). `backy mount` serves one until a signal or an
// unmount; `files`, `get` and `drill` use a private one in a temporary
// directory. Helper programs are started from the calling thread, which must
// be the main thread: their parent-death signal follows it.
import ChunkStore
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

public final class MountSession {
    public struct Options: Sendable {
        /// Mount non-ext filesystems through the kernel (read-only loop).
        public var kernel = false
        public var cacheMiB = 64
        public var threads = 8
        /// The volumes whose files are mounted: nil all, empty none.
        public var volumes: Set<String>?
        /// A temporary mount point of this process (removed at the end).
        public var isPrivate = false

        public init() {}
    }

    public let revision: PinnedRevision
    public let mountpoint: String
    public let options: Options
    let log: Logger
    let fs: RevisionFS
    public private(set) var layout: DiskLayout?
    /// Per volume: where its files are, or why they are not shown.
    public private(set) var state: [String: String] = [:]
    public private(set) var mounts: [VolumeMount] = []
    private var watchdog: Watchdog?
    private var stopped = false

    public static let infoName = ".backy-mount"
    public static let partitionsName = "partitions.txt"

    public init(revision: PinnedRevision, mountpoint: String, options: Options, log: Logger) {
        self.revision = revision
        self.mountpoint = mountpoint
        self.options = options
        self.log = log
        let cache = ChunkLRU(image: revision.image, capacity: max(2, options.cacheMiB * 1024 * 1024 / revision.image.chunkSize))
        cache.onError = { [log, revision] i, error in
            log.error("revision \(revision.revision.id): chunk \(i) (image offset \(revision.image.offset(of: i))) cannot be read: \(error)")
        }
        fs = RevisionFS(cache: cache, time: revision.revision.timestamp, log: log)
    }

    /// A private session: a fresh directory under $TMPDIR (or /tmp;
    /// ToolEnvironment).
    public static func privateMountpoint() throws -> String {
        let base = ToolEnvironment.current.temporaryDirectory
        var template = Array((base + "/backy-mount.XXXXXX").utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw BackyError.posix("cannot create a temporary directory in \(base)")
        }
        // The kernel names mount points canonically (no "//", no symbolic
        // links): so must we, or the mount is never seen in mountinfo.
        let made = String(cString: p)
        guard let real = realpath(made, nil) else { return made }
        defer { free(real) }
        return String(cString: real)
    }

    public func rawName(_ v: Volume) -> String { v.name == "disk" ? "disk.raw" : v.name + ".raw" }
    public func rawPath(_ v: Volume) -> String { mountpoint + "/" + rawName(v) }
    /// Where a volume's files are, if they are mounted.
    public func filesPath(_ name: String) -> String? {
        mounts.first { $0.volume.name == name }.map { $0.path }
    }

    /// Mounts everything. On failure nothing stays mounted.
    public func start() throws {
        precondition(Thread.isMainThread, "helpers must be started from the main thread")
        let image = revision.image
        watchdog = try Watchdog(mountpoint: mountpoint, removeDirectory: options.isPrivate)
        fs.set("disk.raw", .view(offset: 0, size: image.imageSize))
        fs.set(MountSession.infoName, .text(info()))
        do {
            try fs.mount(at: mountpoint, name: "backy:\(revision.job.name):\(revision.revision.id)",
                         threads: options.threads)
            // A damaged chunk where the table lies leaves disk.raw served.
            let layout: DiskLayout
            do {
                layout = try DiskLayout.probe(path: mountpoint + "/disk.raw", size: image.imageSize)
            } catch {
                log.error("\(error)")
                layout = DiskLayout(table: nil, volumes: [], problems: ["\(error)"])
            }
            self.layout = layout
            for v in layout.volumes where v.name != "disk" {
                fs.set(rawName(v), .view(offset: v.offset, size: v.size))
            }
            for v in layout.volumes {
                if let only = options.volumes, !only.contains(v.name) { continue }
                _ = try? mountVolume(v)
            }
            fs.set(MountSession.partitionsName, .text(Array((description.joined(separator: "\n") + "\n").utf8)))
            fs.set(MountSession.infoName, .text(info()))
        } catch {
            stop()
            throw error
        }
    }

    /// Mounts the files of volume `v` on its directory (if not yet) and
    /// returns that directory. Throws `VolumeMount.Refusal` saying why not.
    @discardableResult
    public func mountVolume(_ v: Volume) throws -> String {
        precondition(Thread.isMainThread, "helpers must be started from the main thread")
        if let p = filesPath(v.name) { return p }
        defer {
            fs.set(MountSession.partitionsName, .text(Array((description.joined(separator: "\n") + "\n").utf8)))
            fs.set(MountSession.infoName, .text(info()))
        }
        let kind: VolumeMount.Kind
        switch VolumeMount.plan(v, kernel: options.kernel) {
        case .failure(let why):
            state[v.name] = why.description
            throw BackyError(.usage, "\(v.name) (\(v.type ?? "no filesystem")): \(why)")
        case .success(let k):
            kind = k
        }
        fs.set(v.name, .directory)
        do {
            let m = try VolumeMount.mount(v, image: rawPath(v), at: mountpoint + "/" + v.name, kind: kind)
            mounts.append(m)
            state[v.name] = "files in \(v.name)/ (\(kind == .fuse2fs ? "fuse2fs" : "kernel \(v.type ?? "")"), read-only)"
            return m.path
        } catch {
            fs.set(v.name, nil)
            state[v.name] = "\(error)"
            log.warning("\(rawName(v)): \(error)")
            throw BackyError(.other, "\(v.name) (\(v.type ?? "no filesystem")): \(error)")
        }
    }

    /// The lines `backy mount` prints and partitions.txt holds.
    public var description: [String] {
        guard let layout else { return [] }
        var states = state
        for v in layout.volumes where states[v.name] == nil {
            switch VolumeMount.plan(v, kernel: options.kernel) {
            case .success: states[v.name] = "not mounted here; readable as \(v.name):/PATH"
            case .failure(let why): states[v.name] = why.description
            }
        }
        return layout.describe(imageSize: revision.image.imageSize, opened: states)
    }

    /// .backy-mount: who serves this mount (for `backy umount`).
    func info() -> [UInt8] {
        var doc: [String: Any] = [
            "pid": Int(getpid()),
            "job": revision.job.path,
            "revision": revision.revision.id,
            "revision_time": Timestamp.iso8601(revision.revision.timestamp),
            "tags": revision.revision.sortedTags,
            "kernel": options.kernel,
        ]
        if let layout, let d = try? JSONEncoder().encode(layout),
           let v = try? JSONSerialization.jsonObject(with: d) {
            doc["layout"] = v
        }
        doc["volumes"] = state
        let data = (try? JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return Array(data) + [10]
    }

    /// Serves until a termination signal or until the filesystem is
    /// unmounted from outside; returns which. Logs fuse2fs children that end
    /// on their own (someone unmounted their directory).
    public func serve(signals: StopSignals) -> String {
        var gone = Set<String>()
        while true {
            if let s = signals.wait(milliseconds: 250) { return StopSignals.name(s) }
            if !fs.isServing { return "unmounted" }
            for m in mounts where !gone.contains(m.volume.name) && m.hasExited() {
                gone.insert(m.volume.name)
                log.warning("fuse2fs of \(m.volume.name) ended (exit \(m.exitStatus ?? -1)); its files are no longer shown")
                fs.set(m.volume.name, nil)
            }
        }
    }

    /// Unmounts everything (busy mounts are detached), ends the helpers,
    /// releases the pins and disarms the watchdog.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        for m in mounts.reversed() { m.unmount(force: true) }
        // A filesystem someone mounted below by hand would keep ours busy.
        for e in MountTable.mounts(below: mountpoint) { MountTable.unmount(e.mountpoint, lazy: true) }
        fs.unmount()
        revision.close()
        if options.isPrivate { rmdir(mountpoint) }
        watchdog?.disarm()
    }
}
