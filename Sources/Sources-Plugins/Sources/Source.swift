// Source: what a backup reads from. Each source type (file, ceph-rbd)
// implements this protocol; the backup flow (BackupRun) drives it.
import ChunkStore
import Foundation
import Logging

/// Everything a source needs while it backs up one revision.
// @unchecked Sendable: `extraStats` and `distrustReason` are set only by the source's backup() on the thread that runs it, before the caller reads them.
public final class BackupContext: @unchecked Sendable {
    public let job: Job
    public let revision: Revision
    /// The newest complete revision before this one, if any.
    public let parent: Revision?
    public let writer: ChunkWriter
    public let session: StoreSession
    public let log: Logger
    /// Fields the source wants recorded in the revision's `stats`.
    public var extraStats: YAMLMap = YAMLMap()
    /// Set by a source that found reason to distrust the new revision.
    public var distrustReason: String?

    public init(job: Job, revision: Revision, parent: Revision?, writer: ChunkWriter,
                session: StoreSession, log: Logger) {
        self.job = job
        self.revision = revision
        self.parent = parent
        self.writer = writer
        self.session = session
        self.log = log
    }
}

public protocol BackupSource: AnyObject {
    /// The `type` value of the job config.
    var typeName: String { get }

    /// Throws a one-line error if the source cannot be read now (missing
    /// file or image, no access). Called before a revision is created.
    func ready() throws

    /// Reads the source into the store; returns the new revision's map.
    func backup(_ ctx: BackupContext) throws -> ChunkMap

    /// Checks the stored data against the source. Throws a
    /// `BackyError(.verification)` on mismatch.
    func verify(_ ctx: BackupContext, map: ChunkMap) throws

    /// Called once at the end, after success or failure (snapshot clean-up).
    /// `keep` is the revision whose source state must stay available.
    func finish(_ ctx: BackupContext?, succeeded: Bool, keep: Revision?)
    var usesParentMap: Bool { get }  // a requirement, so the Ceph source's `true` is seen
}

public extension BackupSource {
    func finish(_ ctx: BackupContext?, succeeded: Bool, keep: Revision?) {}
    /// Whether `backup` builds on the parent revision's map (differential
    /// sources); a parent written by backy 2.4 is then upgraded first.
    var usesParentMap: Bool { false }
}
