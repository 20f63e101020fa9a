// ChunkFault: why a chunk could not be read back (missing, truncated,
// corrupt, a hash mismatch, an I/O error), and ChunkReadError, the fault
// with the chunk's name: what restore, verify and NBD report and quarantine.

/// Why a chunk could not be read back.
public enum ChunkFault: Error, Equatable, Sendable, CustomStringConvertible {
    case missing
    case truncated(String)
    case corrupt(String)
    case hashMismatch(actual: String)
    case io(String)

    public var description: String {
        switch self {
        case .missing: return "chunk file is missing"
        case .truncated(let s): return "chunk file is truncated (\(s))"
        case .corrupt(let s): return "chunk file is corrupt (\(s))"
        case .hashMismatch(let a): return "content hash mismatch (data hashes to \(a))"
        case .io(let s): return "read error: \(s)"
        }
    }
}

/// A chunk that failed to read, with its name (64 hex digits for native
/// chunks, 32 for backy 2.4's) and, for native chunks, its id.
public struct ChunkReadError: Error, CustomStringConvertible {
    public let id: ChunkID
    public let name: String
    public let fault: ChunkFault
    public init(id: ChunkID, fault: ChunkFault) { self.id = id; self.name = id.hex; self.fault = fault }
    public init(name: String, fault: ChunkFault) { self.id = .zero; self.name = name; self.fault = fault }
    public var description: String { "chunk \(name): \(fault)" }
}
