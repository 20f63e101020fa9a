// ScheduleMath.swift — the pure schedule math of backy 2.4's scheduler: the ideal
// next time per tag on a grid anchored at 0001-01-01 UTC (backy 2.4's `next_in_interval`), choosing
// the next run's time and tags with missed-tag catch-up (backy 2.4's `Schedule.next`), expiry of tags and
// revisions (`Schedule.expire`), tag ordering, the SLA check and the failure backoff
// (README.md, "Schedules, retries, retention" and "Monitoring with `backy check`").
// Everything is a pure function of its inputs (the clock is always passed in).

import ChunkStore
import Foundation

// MARK: - Grid

/// Seconds from 0001-01-01 00:00:00 UTC (proleptic Gregorian, Python's
/// `datetime.min`, a Monday) to the Unix epoch 1970-01-01 00:00:00 UTC.
public let yearOneToUnixEpoch: TimeInterval = 62_135_596_800

/// Seconds from 0001-01-01 00:00:00 UTC to Foundation's reference date 2001-01-01.
private let yearOneToReferenceDate: TimeInterval = yearOneToUnixEpoch + 978_307_200

/// backy's `next_in_interval`: the next point strictly after `now` on the grid
/// `k · interval + (spread mod interval)` seconds after 0001-01-01 00:00:00 UTC.
/// Computed in float seconds: next = (⌊(t − s) / interval⌋ + 1) · interval + s.
///
/// - Parameters:
///   - interval: grid spacing in seconds (> 0).
///   - spread: the job's spread in seconds (reduced modulo `interval`).
public func nextInInterval(now: Date, interval: Int, spread: Int) -> Date {
    precondition(interval > 0, "interval must be positive")
    let offset = Double(((spread % interval) + interval) % interval)
    let step = Double(interval)
    let t = now.timeIntervalSinceReferenceDate + yearOneToReferenceDate
    let next = ((t - offset) / step).rounded(.down) * step + step + offset
    return Date(timeIntervalSinceReferenceDate: next - yearOneToReferenceDate)
}

// MARK: - Inputs

/// A revision as far as scheduling is concerned.
public struct ScheduleRevision: Sendable, Hashable {
    /// The revision id (uuid).
    public var id: String
    /// When the backup was taken.
    public var timestamp: Date
    /// The revision's tags (schedule tags and ad-hoc tags).
    public var tags: Set<String>
    /// Whether the backup finished (`stats.duration` present in its metadata).
    public var complete: Bool

    public init(id: String, timestamp: Date, tags: Set<String>, complete: Bool) {
        self.id = id
        self.timestamp = timestamp
        self.tags = tags
        self.complete = complete
    }

    /// A complete revision that counts for the schedule: not dated more than
    /// `Job.futureTolerance` after `now`. A future-dated revision (a clock
    /// that was wrong, a damaged or planted file) never makes a job look
    /// fresh, never satisfies a tag, never counts toward `keep` and is never
    /// expired; status and check flag it.
    public func counts(now: Date) -> Bool {
        complete && timestamp.timeIntervalSince(now) <= Job.futureTolerance
    }
}

/// One tag of a schedule: how often it is taken and how many to keep.
public struct ScheduleTag: Sendable, Hashable {
    /// Interval in whole seconds (> 0).
    public var interval: Int
    /// Number of revisions to keep at least (> 0).
    public var keep: Int

    public init(interval: Int, keep: Int) {
        self.interval = interval
        self.keep = keep
    }
}

/// Why a schedule definition was rejected.
public enum ScheduleError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The schedule has no tags.
    case empty
    /// A tag's interval string is malformed, zero, negative or too large.
    case invalidInterval(tag: String, DurationError)
    /// A tag's interval (in seconds) is not in 1...maxDurationSeconds.
    case intervalOutOfRange(tag: String, seconds: Int)
    /// A tag's keep count is not positive.
    case invalidKeep(tag: String, keep: Int)

    public var description: String {
        switch self {
        case .empty:
            return "schedule has no tags"
        case let .invalidInterval(tag, error):
            return "tag \"\(tag)\": \(error.description)"
        case let .intervalOutOfRange(tag, seconds):
            return "tag \"\(tag)\": invalid interval \(seconds) s: must be between 1 and \(maxDurationSeconds)"
        case let .invalidKeep(tag, keep):
            return "tag \"\(tag)\": invalid keep \(keep): must be a positive integer"
        }
    }
}

/// The SLA state of a job (status file `sla` key).
public enum SLAStatus: String, Sendable, Hashable {
    case ok = "OK"
    case tooOld = "TOO OLD"
}

/// What expiry decided (backy's `Schedule.expire`). Only complete revisions are
/// considered; the caller rewrites the metadata of changed revisions and removes the
/// tag-less ones.
public struct ExpiryResult: Sendable, Equatable {
    /// Revision id → the schedule tags it loses. Only revisions that lose something.
    public var lostTags: [String: Set<String>]
    /// Revision id → its tags after expiry, for every revision in `lostTags`
    /// (empty for those that are removed).
    public var remainingTags: [String: Set<String>]
    /// Ids of complete revisions left without any tag (including ones that had no tag
    /// to begin with), oldest first: to be removed.
    public var removed: [String]

    public init(lostTags: [String: Set<String>] = [:],
                remainingTags: [String: Set<String>] = [:],
                removed: [String] = []) {
        self.lostTags = lostTags
        self.remainingTags = remainingTags
        self.removed = removed
    }
}

/// How long before an ideal run missed tags are no longer caught up immediately
/// (they are folded into that run instead): 5 minutes.
public let catchUpGracePeriod: TimeInterval = 5 * 60

/// Retry delay after `failures` consecutive failed runs: min(2^failures, 360) minutes
/// in seconds → 120, 240, 480, … capped at 21600 (6 h). `failures` is ≥ 1 in practice;
/// smaller values are treated as 0 (60 s).
public func backoff(failures: Int) -> TimeInterval {
    let exponent = max(0, failures)
    let minutes = exponent >= 9 ? 360 : min(1 << exponent, 360)
    return TimeInterval(minutes * 60)
}

// MARK: - Schedule

/// A backup schedule: tag → (interval, keep). Validated on construction: at least one
/// tag, intervals in 1...maxDurationSeconds, keep ≥ 1.
public struct Schedule: Sendable, Hashable {
    /// The schedule's tags.
    public let entries: [String: ScheduleTag]

    /// A schedule from already parsed entries.
    public init(_ entries: [String: ScheduleTag]) throws {
        guard !entries.isEmpty else { throw ScheduleError.empty }
        for tag in entries.keys.sorted() {
            let entry = entries[tag]!
            guard entry.interval > 0, entry.interval <= maxDurationSeconds else {
                throw ScheduleError.intervalOutOfRange(tag: tag, seconds: entry.interval)
            }
            guard entry.keep > 0 else {
                throw ScheduleError.invalidKeep(tag: tag, keep: entry.keep)
            }
        }
        self.entries = entries
    }

    /// A schedule from configuration values: interval strings as in `parseDuration`
    /// (a YAML integer passed as its text) and keep counts.
    public init(config: [String: (interval: String, keep: Int)]) throws {
        var entries: [String: ScheduleTag] = [:]
        for tag in config.keys.sorted() {
            let spec = config[tag]!
            let seconds: Int
            do {
                seconds = try parseDuration(spec.interval)
            } catch let error as DurationError {
                throw ScheduleError.invalidInterval(tag: tag, error)
            }
            entries[tag] = ScheduleTag(interval: seconds, keep: spec.keep)
        }
        try self.init(entries)
    }

    /// The interval of `tag` in seconds, or nil for a tag not in the schedule.
    public func interval(of tag: String) -> Int? {
        entries[tag]?.interval
    }

    /// The largest interval (L of the spread computation).
    public var maxInterval: Int {
        entries.values.map(\.interval).max()!
    }

    /// The smallest interval (basis of the SLA).
    public var minInterval: Int {
        entries.values.map(\.interval).min()!
    }

    /// The earliest ideal time over all tags and the tags whose ideal time it is
    /// (backy's `_next_ideal`).
    public func idealNext(now: Date, spread: Int) -> (time: Date, tags: Set<String>) {
        var best: Date?
        var tags: Set<String> = []
        for (tag, entry) in entries {
            let time = nextInInterval(now: now, interval: entry.interval, spread: spread)
            if best == nil || time < best! {
                best = time
                tags = [tag]
            } else if time == best! {
                tags.insert(tag)
            }
        }
        return (best!, tags)
    }

    /// Schedule tags without a complete revision carrying the tag that is newer than
    /// `now − interval`. Ad-hoc tags are ignored; incomplete revisions do not count
    /// (deliberate difference from 2.4.3, which counted them).
    public func missedTags(now: Date, history: [ScheduleRevision]) -> Set<String> {
        var missed = Set(entries.keys)
        for revision in history where revision.counts(now: now) {
            for tag in revision.tags where missed.contains(tag) {
                let interval = TimeInterval(entries[tag]!.interval)
                if revision.timestamp > now.addingTimeInterval(-interval) {
                    missed.remove(tag)
                }
            }
        }
        return missed
    }

    /// When the next backup should run and with which tags (backy's `Schedule.next`):
    /// tags = ideal tags ∪ missed tags; if some tags were missed, the job has at least one
    /// complete revision and the ideal time is more than 5 minutes away, run `now` with
    /// only the missed tags; otherwise run at the ideal time with the union. A job
    /// without complete revisions thus waits for its first ideal slot and takes all tags.
    public func next(now: Date, spread: Int, history: [ScheduleRevision])
        -> (time: Date, tags: Set<String>)
    {
        let ideal = idealNext(now: now, spread: spread)
        let missed = missedTags(now: now, history: history)
        let hasHistory = history.contains { $0.counts(now: now) }
        if !missed.isEmpty, hasHistory, ideal.time > now.addingTimeInterval(catchUpGracePeriod) {
            return (now, missed)
        }
        return (ideal.time, ideal.tags.union(missed))
    }

    /// Expiry (backy's `Schedule.expire`) over the complete revisions of `history`:
    /// for each schedule tag with R = the complete revisions carrying it (oldest first),
    /// if |R| ≥ keep, every revision of R except the newest `keep` whose timestamp is
    /// older than `now − keep × interval` loses the tag. Ad-hoc tags never expire.
    /// Complete revisions left without tags are to be removed.
    public func expire(now: Date, history: [ScheduleRevision]) -> ExpiryResult {
        // Oldest first; ties broken by id so the result does not depend on input order.
        let revisions = history.filter { $0.counts(now: now) }.sorted {
            $0.timestamp != $1.timestamp ? $0.timestamp < $1.timestamp : $0.id < $1.id
        }
        var tags = revisions.map(\.tags)
        var lost = [Set<String>](repeating: [], count: revisions.count)
        for (tag, entry) in entries {
            let carrying = revisions.indices.filter { revisions[$0].tags.contains(tag) }
            guard carrying.count >= entry.keep else { continue }
            let threshold = now.addingTimeInterval(-Double(entry.keep) * Double(entry.interval))
            for index in carrying.dropLast(entry.keep) where revisions[index].timestamp < threshold {
                tags[index].remove(tag)
                lost[index].insert(tag)
            }
        }
        var result = ExpiryResult()
        for index in revisions.indices {
            let id = revisions[index].id
            if !lost[index].isEmpty {
                result.lostTags[id, default: []].formUnion(lost[index])
                result.remainingTags[id] = tags[index]
            }
            if tags[index].isEmpty {
                result.removed.append(id)
            }
        }
        return result
    }

    /// Tags ordered by interval; tags not in the schedule count as interval 0 (so they
    /// come first); ties by name (code-point order, like Python).
    public func sortedTags<S: Sequence>(_ tags: S) -> [String] where S.Element == String {
        tags.sorted { a, b in
            let ia = interval(of: a) ?? 0
            let ib = interval(of: b) ?? 0
            if ia != ib { return ia < ib }
            return a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
        }
    }

    /// The SLA (README.md, "Monitoring with `backy check`"): OK if there is no complete revision, or if the newest
    /// complete revision is at most 1.5 × the smallest interval old; else TOO OLD.
    /// Incomplete revisions never count, nor do future-dated ones: a job whose
    /// complete revisions are all future-dated is TOO OLD.
    public func sla(now: Date, history: [ScheduleRevision]) -> SLAStatus {
        guard let newest = history.filter({ $0.counts(now: now) }).map(\.timestamp).max() else {
            return history.contains(where: \.complete) ? .tooOld : .ok
        }
        let age = now.timeIntervalSince(newest)
        return age <= 1.5 * Double(minInterval) ? .ok : .tooOld
    }
}
