// MultiJobExports: the exports of every job of a configuration, for
// `backy nbd-server -c CONFIG` and the scheduler's in-process server.
// Export names are `JOB/REV` (REV any revision spec: number, id, tag,
// `latest`; `JOB` alone or `JOB/` means the newest revision); NBD_OPT_LIST
// shows `JOB/latest` and `JOB/<id>` for every complete revision of every
// job, with descriptions. Revisions are scanned on every request, so
// exports appear and disappear with backups and expiry; `update` replaces
// the list of jobs (after a configuration reload). Each job is served by a
// JobExports, which pins what a connection reads for purge.
import ChunkStore
import Foundation
import Logging

public final class MultiJobExports: ExportProvider, Sendable {
    let log: Logger
    /// Job name → job directory.
    private let jobs: Locked<[String: String]>
    /// Opened jobs (a directory without a `config` is not a job yet).
    private let opened = Locked<[String: JobExports]>([:])

    public init(jobs: [String: String], log: Logger) {
        self.jobs = Locked(jobs)
        self.log = log
    }

    /// Replaces the jobs served (connections keep what they opened).
    public func update(jobs new: [String: String]) {
        jobs.with { $0 = new }
        opened.with { m in
            for (name, e) in m where new[name] != e.job.path && new[name].flatMap(Posix.realpath) != e.job.path {
                m[name] = nil
            }
        }
    }

    public var jobNames: [String] { jobs.with { $0.keys.sorted() } }

    /// The JobExports of a job; nil if the job has no directory or config yet.
    func exports(_ name: String) -> JobExports? {
        if let e = opened.with({ $0[name] }) { return e }
        guard let path = jobs.with({ $0[name] }), let job = try? Job(path: path, logger: log) else { return nil }
        let e = JobExports(job: job, log: log)
        return opened.with { m in
            if let have = m[name] { return have }
            m[name] = e
            return e
        }
    }

    /// Splits `JOB/REV`; REV is empty for `JOB` and `JOB/`.
    func split(_ name: String) throws -> (JobExports, String, String) {
        let job: String
        let rev: String
        if let slash = name.firstIndex(of: "/") {
            job = String(name[..<slash])
            rev = String(name[name.index(after: slash)...])
        } else {
            job = name
            rev = ""
        }
        let known = jobNames
        guard !job.isEmpty, known.contains(job) else {
            let list = known.prefix(20).joined(separator: ", ") + (known.count > 20 ? ", …" : "")
            throw ExportNotFound(name.isEmpty
                ? "export names are JOB/REV (jobs: \(list))"
                : "unknown job '\(job)': export names are JOB/REV (jobs: \(list))")
        }
        guard let e = exports(job) else { throw ExportNotFound("job \(job) has no backups yet") }
        return (e, job, rev)
    }

    public func list() throws -> [ExportInfo] {
        var out: [ExportInfo] = []
        for name in jobNames {
            guard let e = exports(name), let revs = try? e.list(), !revs.isEmpty else { continue }
            // JobExports lists oldest first; the newest is `latest`.
            let newest = revs[revs.count - 1]
            out.append(ExportInfo(name: name + "/latest", description: "newest revision of \(name): \(newest.name), \(newest.description)",
                                  size: newest.size))
            for r in revs {
                out.append(ExportInfo(name: name + "/" + r.name, description: r.description, size: r.size))
            }
        }
        return out
    }

    public func describe(_ name: String) throws -> ExportInfo {
        let (e, job, rev) = try split(name)
        var info = try e.describe(rev)
        info.name = job + "/" + info.name
        return info
    }

    public func open(_ name: String) throws -> OpenExport {
        let (e, job, rev) = try split(name)
        let ex = try e.open(rev)
        var info = ex.info
        info.name = job + "/" + info.name
        return OpenExport(info: info, image: ex.image) { ex.close() }
    }
}
