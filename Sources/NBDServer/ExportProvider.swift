// ExportProvider: what the NBD server serves: a provider lists, describes and
// opens exports by name (JobExports: one job's revisions; MultiJobExports:
// every job of a configuration as JOB/REV); an opened export is released by
// `close()`.
import ChunkStore
import Foundation

public struct ExportInfo: Sendable, Equatable {
    /// The canonical name (a revision id).
    public var name: String
    public var description: String
    public var size: UInt64

    public init(name: String, description: String, size: UInt64) {
        self.name = name
        self.description = description
        self.size = size
    }
}

/// An export opened by one connection; `close()` releases it.
public final class OpenExport: Sendable {
    public let info: ExportInfo
    public let image: ImageReader
    private let onClose: @Sendable () -> Void
    private let closed = Locked(false)

    public init(info: ExportInfo, image: ImageReader, onClose: @escaping @Sendable () -> Void = {}) {
        self.info = info
        self.image = image
        self.onClose = onClose
    }

    public func close() {
        let first = closed.with { c -> Bool in
            defer { c = true }
            return !c
        }
        if first { onClose() }
    }

    deinit { close() }
}

public struct ExportNotFound: Error, CustomStringConvertible {
    public let description: String
    public init(_ s: String) { description = s }
}

public protocol ExportProvider: AnyObject, Sendable {
    /// Every export, in listing order.
    func list() throws -> [ExportInfo]
    /// One export by any name a client may use; throws `ExportNotFound`.
    func describe(_ name: String) throws -> ExportInfo
    /// Opens an export for transmission; throws `ExportNotFound` or others.
    func open(_ name: String) throws -> OpenExport
}
