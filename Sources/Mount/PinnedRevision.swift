// PinnedRevision: a complete revision opened for reading for as long as a
// mount, a file restore or a drill runs, with its map pinned for purge (a pin
// session, docs/store-format.md "Purge and concurrent sessions"): purge
// beside it removes nothing it reads, and a killed reader's pins lapse with
// its flock like any dead session's.
import ChunkStore
import Foundation
import Logging

public final class PinnedRevision: Sendable {
    public let job: Job
    public let revision: Revision
    public let image: ImageReader
    private let session: StoreSession?

    /// Resolves `spec` to a complete revision, pins it and opens its image.
    public init(job: Job, spec: String, log: Logger) throws {
        self.job = job
        let rev = try job.findComplete(spec)
        if case .unknown(let s) = rev.backend {
            throw BackyError(.usage, "revision \(rev.id) has an unknown backend type '\(s)'")
        }
        revision = rev
        var session: StoreSession?
        do {
            session = try job.backend.openSession()
        } catch {
            // A job on read-only media (an offline copy) cannot be purged
            // either: read it without pins.
            guard !job.backend.isWritable else { throw error }
            log.warning("\(job.path) is not writable: reading revision \(rev.id) without pinning it for purge")
        }
        self.session = session
        do {
            image = try job.openPinnedImage(rev, session: session)
        } catch {
            session?.close()
            throw error
        }
    }

    /// Releases the pins.
    public func close() { session?.close() }

    deinit { close() }

    /// "<id> (<time> UTC, tags: a,b)".
    public var summary: String {
        let tags = revision.sortedTags.isEmpty ? "no tags" : "tags: " + revision.sortedTags.joined(separator: ",")
        return "\(revision.id) (\(Timestamp.formatSeconds(revision.timestamp)) UTC, \(tags))"
    }
}
