// MountCommands: `backy mount`, `backy umount`, `backy files`, `backy get`:
// a revision's disk, partitions and files, read-only, through FUSE. The
// work happens in the Mount library; `mount` without -f starts itself again
// as a background process (its own session) and waits on a pipe until that
// process reports the mount ready or failed.
import ArgumentParser
import ChunkStore
import Foundation
import Logging
import Mount
import Presentation
import Scheduler
#if canImport(Glibc)
import Glibc
#endif

/// The job of a command: `-b DIR`, or `-c CONFIG JOB` (JOB is then the first
/// positional argument).
enum JobSelection {
    /// Checks the number of positional arguments (usage error, exit 2).
    static func check(_ args: [String], config: String?, required: Int, optional: Int, what: String) throws {
        let n = args.count - (config == nil ? 0 : 1)
        if config != nil && args.isEmpty { throw ValidationError("with -c CONFIG, name the JOB first") }
        guard n >= required && n <= required + optional else {
            let want = ((config == nil ? [] : ["JOB"]) + (what.isEmpty ? [] : [what])).joined(separator: " ")
            throw ValidationError("expected \(want.isEmpty ? "no arguments" : want), got \(args.count) argument\(args.count == 1 ? "" : "s")")
        }
    }

    /// Returns the global options pointing at the job, and the remaining
    /// positional arguments.
    static func resolve(_ global: GlobalOptions, config: String?, _ args: [String]) throws -> (GlobalOptions, [String]) {
        guard let config else { return (global, args) }
        guard let name = args.first else { throw ValidationError("with -c CONFIG, name the JOB first") }
        let cfg: SchedulerConfig
        do {
            cfg = try SchedulerConfig.load(path: config)
        } catch {
            throw BackyError(.usage, "\(error)")
        }
        guard cfg.jobs.contains(where: { $0.name == name }) else {
            throw BackyError(.usage, "\(config) has no job '\(name)'")
        }
        var g = global
        g.backupdir = cfg.baseDir + "/" + name
        return (g, Array(args.dropFirst()))
    }
}

struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount a revision read-only: the disk image, its partitions and their files.",
        discussion: """
            MOUNTPOINT (created if missing) shows disk.raw (the whole image), partN.raw for each \
            partition of an MBR or GPT table, partN/ (or disk/ for a disk without partition table) \
            with the files of each ext2/3/4 filesystem (through fuse2fs, in userspace), and \
            partitions.txt. Other filesystems are mounted only with --kernel (a read-only loop mount \
            through the kernel's driver); LVM, LUKS and swap are reported, not opened. Every chunk \
            read is hash-checked; purge leaves the revision alone while it is mounted. Without -f \
            the mount is served by a background process and the command returns once it is ready. \
            Undo it with `backy umount MOUNTPOINT`. Exit 0 mounted, 1 error, 2 usage.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("c"), .customLong("config")], help: ArgumentHelp("Take the job from this configuration file; JOB then comes first.", valueName: "CONFIG"))
    var config: String?
    @Option(name: [.customShort("r"), .customLong("revision")], help: "Revision spec: number from newest, id, tag, last/latest.")
    var revision = "latest"
    @Flag(name: .customLong("kernel"), help: "Also mount filesystems other than ext2/3/4 (vfat, xfs, ...) read-only through the kernel.")
    var kernel = false
    @Flag(name: [.customShort("f"), .customLong("foreground")], help: "Stay in the foreground; Ctrl-C (SIGINT) or SIGTERM unmounts.")
    var foreground = false
    @Option(name: .customLong("cache-mib"), help: "Memory for decoded chunks, in MiB.")
    var cacheMiB = 64
    @Option(name: .customLong("notify-fd"), help: .hidden)
    var notifyFD: Int32?
    @Argument(help: ArgumentHelp("[JOB] MOUNTPOINT (JOB only with -c).", valueName: "MOUNTPOINT"))
    var args: [String] = []

    func validate() throws {
        guard cacheMiB >= 8 else { throw ValidationError("--cache-mib must be at least 8") }
        try JobSelection.check(args, config: config, required: 1, optional: 0, what: "MOUNTPOINT")
    }

    func run() throws {
        try Operation.run(global, quiet: !foreground) { log in
            let (g, rest) = try JobSelection.resolve(global, config: config, args)
            if foreground { return try serve(g, rest[0], log: log) }
            return try detach(g, rest[0], log: log)
        }
    }

    /// Creates MOUNTPOINT if missing; refuses one that is already a mount
    /// (also a dead one, whose directory cannot even be looked at).
    static func prepare(_ path: String) throws -> String {
        let real = MountTable.canonical(path)
        if let m = MountTable.mount(at: real) {
            throw BackyError(.usage, "\(path) is already a mount point (\(m.fstype))\(m.fstype == MountTable.backyType ? "; backy umount it first" : "")")
        }
        if !Posix.exists(real) && mkdir(real, 0o755) != 0 {
            throw BackyError.posix("cannot create the mount point \(path)")
        }
        guard Posix.isDirectory(real) else { throw BackyError(.usage, "\(path) is not a directory") }
        return Posix.realpath(real) ?? real
    }

    /// The mount itself (in the foreground, or as the background process).
    func serve(_ g: GlobalOptions, _ path: String, log: Logger) throws -> Int32 {
        let notify = notifyFD
        func tell(_ text: String) {
            guard let fd = notify else { return }
            _ = text.utf8CString.withUnsafeBufferPointer { Glibc.write(fd, $0.baseAddress!, $0.count - 1) }
            Glibc.close(fd)
        }
        let session: MountSession
        let signals: StopSignals
        do {
            signals = try StopSignals()
            let job = try Operation.openJob(g, log: log)
            let mp = try MountCommand.prepare(path)
            let rev = try PinnedRevision(job: job, spec: revision, log: log)
            var opts = MountSession.Options()
            opts.kernel = kernel
            opts.cacheMiB = cacheMiB
            session = MountSession(revision: rev, mountpoint: mp, options: opts, log: log)
            try session.start()
        } catch {
            tell("error\n\(error)\n")
            throw error
        }
        let mp = session.mountpoint
        let lines = ["Mounted revision \(session.revision.summary) at \(mp) (pid \(getpid()))"]
            + session.description.map { "  " + $0 }
            + ["Unmount with: backy umount \(mp)"]
        log.info("Mounted revision \(session.revision.revision.id) at \(mp)")
        if notify != nil {
            tell("ok\n" + lines.joined(separator: "\n") + "\n")
        } else {
            print(lines.joined(separator: "\n"))
        }
        let why = session.serve(signals: signals)
        log.info("Unmounting \(mp) (\(why))")
        session.stop()
        return 0
    }

    /// Starts the background process and relays its first words.
    func detach(_ g: GlobalOptions, _ path: String, log: Logger) throws -> Int32 {
        // Check what can be checked here, so that mistakes show at once.
        let job = try Operation.openJob(g, log: log, jobLog: false)
        let rev = try job.findComplete(revision)
        let mp = try MountCommand.prepare(path)
        let (r, w) = try Spawn.pipe()
        let p = [r, w]
        var argv: [String] = ["-b", job.path]
        if let l = g.logFile { argv += ["-l", (l as NSString).isAbsolutePath ? l : FileManager.default.currentDirectoryPath + "/" + l] }
        if g.isVerbose { argv.append("-v") }
        argv += ["mount", "-f", "--notify-fd", "3", "-r", rev.id, "--cache-mib", String(cacheMiB)]
        if kernel { argv.append("--kernel") }
        argv.append(mp)
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let pid: pid_t
        do {
            pid = try Spawn.start(exe, argv, extraFD: p[1], dieWithParent: false, newSession: true)
        } catch {
            Glibc.close(p[0]); Glibc.close(p[1])
            throw error
        }
        Glibc.close(p[1])
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = Glibc.read(p[0], &buf, buf.count)
            if n > 0 { bytes += buf[0..<n]; continue }
            if n < 0 && errno == EINTR { continue }
            break
        }
        Glibc.close(p[0])
        let text = String(decoding: bytes, as: UTF8.self)
        if text.hasPrefix("ok\n") {
            print(text.dropFirst(3), terminator: "")
            return 0
        }
        if text.hasPrefix("error\n") {
            throw BackyError(.other, text.dropFirst(6).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let status = Spawn.poll(pid).map { " (exit \($0))" } ?? ""
        throw BackyError(.other, "the mount process ended before the mount was ready\(status); see \(job.path)/backy.log")
    }
}

struct UmountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "umount",
        abstract: "Unmount a `backy mount`.",
        discussion: "Unmounts the partitions' files and the revision, ends the mount's background process and releases its pins. Refuses, changing nothing, while files under MOUNTPOINT are in use. Exit 0 unmounted, 1 error.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The mount point.") var mountpoint: String

    func run() throws {
        try Operation.run(global, quiet: true) { _ in
            print(try MountControl.unmount(mountpoint))
            return 0
        }
    }
}

/// What `files` and `get` share: a private mount of the revision with the
/// volume PATH names.
struct PrivateMount {
    let session: MountSession
    let root: String
    let path: String

    static func open(_ g: GlobalOptions, revision: String, kernel: Bool, spec: String?, jobLog: Bool,
                     log: Logger) throws -> (MountSession, PrivateMount?) {
        let job = try Operation.openJob(g, log: log, jobLog: jobLog)
        let rev = try PinnedRevision(job: job, spec: revision, log: log)
        var opts = MountSession.Options()
        opts.kernel = kernel
        opts.volumes = []
        opts.isPrivate = true
        let s = MountSession(revision: rev, mountpoint: try MountSession.privateMountpoint(), options: opts, log: log)
        try s.start()
        guard let spec else { return (s, nil) }
        do {
            let (name, path) = FileRestore.parse(spec)
            let v = try FileRestore.volume(name, in: s.layout!, kernel: kernel)
            let root = try s.mountVolume(v)
            return (s, PrivateMount(session: s, root: root, path: path))
        } catch {
            s.stop()
            throw error
        }
    }
}

struct FilesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "files",
        abstract: "List a directory (or show a file) inside a revision.",
        discussion: """
            PATH is part1:/etc, disk:/etc, or /etc when the revision holds one filesystem that can \
            be read. Without PATH, shows the revision's partitions. Lines: mode, uid, gid, size, \
            modification time (UTC), name. Reads through a private, temporary mount (FUSE and \
            fuse2fs, as `backy mount`), removed when the command ends.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("c"), .customLong("config")], help: ArgumentHelp("Take the job from this configuration file; JOB then comes first.", valueName: "CONFIG"))
    var config: String?
    @Option(name: [.customShort("r"), .customLong("revision")], help: "Revision spec: number from newest, id, tag, last/latest.")
    var revision = "latest"
    @Flag(name: .customLong("kernel"), help: "Read filesystems other than ext2/3/4 through the kernel (read-only loop mount).")
    var kernel = false
    @Argument(help: ArgumentHelp("[JOB] [PATH] (JOB only with -c).", valueName: "PATH"))
    var args: [String] = []

    func validate() throws {
        try JobSelection.check(args, config: config, required: 0, optional: 1, what: "PATH")
    }

    func run() throws {
        try Operation.run(global, quiet: true) { log in
            let (g, rest) = try JobSelection.resolve(global, config: config, args)
            let (session, target) = try PrivateMount.open(g, revision: revision, kernel: kernel, spec: rest.first,
                                                          jobLog: false, log: log)
            defer { session.stop() }
            guard let target else {
                print(([ "Revision \(session.revision.summary)"] + session.description.map { "  " + $0 }).joined(separator: "\n"))
                return 0
            }
            let p = try FileRestore.resolve(root: target.root, target.path, followLast: target.path.hasSuffix("/"))
            let lines = try FileRestore.list(p)
            if !lines.isEmpty { print(lines.joined(separator: "\n")) }
            return 0
        }
    }
}

struct GetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Copy a file or directory out of a revision.",
        discussion: """
            PATH as for `backy files`. DEST: a new name, an existing directory to copy into, or - \
            for a file's bytes on stdout; default: the current directory. Nothing existing is \
            overwritten, and nothing is written into a job directory. Copies keep mode (set-user/group-ID bits dropped) and modification time, \
            recreate symbolic links (never followed out of the revision), and skip device nodes, \
            FIFOs and sockets. Exit 0 copied, 1 error (also when single files could not be read; \
            the others are copied).
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("c"), .customLong("config")], help: ArgumentHelp("Take the job from this configuration file; JOB then comes first.", valueName: "CONFIG"))
    var config: String?
    @Option(name: [.customShort("r"), .customLong("revision")], help: "Revision spec: number from newest, id, tag, last/latest.")
    var revision = "latest"
    @Flag(name: .customLong("kernel"), help: "Read filesystems other than ext2/3/4 through the kernel (read-only loop mount).")
    var kernel = false
    @Argument(help: ArgumentHelp("[JOB] PATH [DEST] (JOB only with -c).", valueName: "PATH"))
    var args: [String] = []

    func validate() throws {
        try JobSelection.check(args, config: config, required: 1, optional: 1, what: "PATH [DEST]")
    }

    func run() throws {
        try Operation.run(global, quiet: true) { log in
            let (g, rest) = try JobSelection.resolve(global, config: config, args)
            let dest = rest.count == 2 ? rest[1] : nil
            let (session, target) = try PrivateMount.open(g, revision: revision, kernel: kernel, spec: rest[0],
                                                          jobLog: true, log: log)
            defer { session.stop() }
            guard let target else { return 1 }
            if dest == "-" {
                let p = try FileRestore.resolve(root: target.root, target.path, followLast: true)
                _ = try FileRestore.cat(p)
                return 0
            }
            let src = try FileRestore.resolve(root: target.root, target.path, followLast: false)
            let dst = try FileRestore.destination(for: src, dest: dest, jobPath: g.jobDir)
            let r = try FileRestore.copy(src, to: dst)
            for s in r.skipped { log.warning("Not copied (device, FIFO or socket): \(s.dropFirst(target.root.count))") }
            for (p, why) in r.failed { log.error("Not copied: \(p.dropFirst(target.root.count)): \(why)") }
            let what = "\(r.files) file\(r.files == 1 ? "" : "s"), \(r.directories) director\(r.directories == 1 ? "y" : "ies"), \(r.links) link\(r.links == 1 ? "" : "s"), \(ByteFormat.flexible(Int64(r.bytes)))"
            log.info("Copied \(rest[0]) of revision \(session.revision.revision.id) to \(dst): \(what)")
            print("Copied \(rest[0]) to \(dst): \(what)")
            if let first = r.failed.first {
                throw BackyError(.io, "\(r.failed.count) file\(r.failed.count == 1 ? "" : "s") could not be copied (first: \(first.0.dropFirst(target.root.count)): \(first.1))")
            }
            return 0
        }
    }
}
