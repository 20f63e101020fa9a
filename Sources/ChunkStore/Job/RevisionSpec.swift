// RevisionSpec: how a revision spec (`-r`, NBD export names) finds a
// revision: a number counts back from the newest usable revision, an exact
// id finds any revision, `last`/`latest`, or a tag (README.md, "Revision
// specs"). Future-dated revisions are found only by their id.
import Foundation

extension Job {
    /// How far in the future a revision's timestamp may lie before it is
    /// *future-dated* (clocks of one host differ by less).
    public static let futureTolerance: TimeInterval = 600

    /// Complete revisions that count as backups for `latest`, numbers,
    /// tags, parents, the SLA and the schedule: not future-dated. A
    /// revision dated after `now` + `futureTolerance` (a clock that was
    /// wrong, a damaged or planted file) is flagged by status and check and
    /// reachable only by its id.
    public static func usable(_ all: [Revision], now: Date = Date()) -> [Revision] {
        all.filter { $0.isComplete && !$0.isFutureDated(now: now) }
    }

    /// Resolves a revision spec (backy 2.4's rules): a number counts back
    /// from the newest complete revision (0 = newest); an exact id; `last`
    /// or `latest`; a tag (newest complete revision carrying it).
    /// Numbers, `latest` and tags count only usable (not future-dated)
    /// revisions; an exact id finds any revision.
    public static func find(_ spec: String, in all: [Revision], now: Date = Date()) throws -> Revision {
        let complete = usable(all, now: now)
        let s = spec.trimmingCharacters(in: .whitespaces)
        if s.isEmpty { throw BackyError(.notFound, "empty revision spec") }
        if let n = Int(s) {
            if n < 0 { throw BackyError(.notFound, "unknown revision '\(spec)' (negative number)") }
            if n < complete.count { return complete[complete.count - 1 - n] }
        }
        if let r = all.first(where: { $0.id == s }) { return r }
        if s == "last" || s == "latest" {
            if let r = complete.last { return r }
            throw BackyError(.notFound, "unknown revision '\(spec)': the job has no complete revision" + (all.contains { $0.isComplete } ? " that is not future-dated (give its id)" : ""))
        }
        if let r = complete.last(where: { $0.tags.contains(s) }) { return r }
        throw BackyError(.notFound, "unknown revision '\(spec)'")
    }

    public func find(_ spec: String) throws -> Revision { try Job.find(spec, in: try scan()) }

    /// Like `find`, but the revision must be complete.
    public func findComplete(_ spec: String) throws -> Revision {
        let r = try find(spec)
        guard r.isComplete else { throw BackyError(.notFound, "revision \(r.id) is incomplete (its backup did not finish)") }
        return r
    }
}
