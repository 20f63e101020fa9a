// ChunkKey: what the bytes of one chunk of an image are, as the image reader
// names them — a native chunk by its SHA-256, a backy 2.4 chunk by its
// MurmurHash3 (and how much of it the image uses), anything else by the
// image itself and the byte range. Two keys are equal only if they name the
// same bytes: content keys are shared by every image that uses the chunk
// (so revisions and clients share cache entries), and an image's identity
// holds the image, so it cannot be reused by another image while a key
// (in a cache, say) still names it. Safe by construction: no cache has to
// ask what kind of image it holds.

public enum ChunkKey: Hashable, Sendable {
    /// A native chunk: the SHA-256 of its bytes.
    case sha256(ChunkID)
    /// A backy 2.4 chunk: the MurmurHash3 of its bytes, and how many of
    /// them the image uses (a chunk may hold more than a shrunk image needs).
    case mmh3(String, length: Int)
    /// Bytes of one image that names no chunks (a raw backy 2.x image).
    case bytes(ImageIdentity, offset: UInt64, length: Int)
    /// A chunk the image's map has no entry for (a damaged backy 2.4 map).
    case unmapped(ImageIdentity, index: Int)

    /// The stored chunk this key names, if it names one.
    public var stored: StoredChunk? {
        switch self {
        case .sha256(let id): return id.isZero ? nil : .native(id)
        case .mmh3(let h, _): return .legacy(h)
        case .bytes, .unmapped: return nil
        }
    }
}

/// An image as part of a key: equal only to itself. Holds the image, so
/// its identity is not reused while the key exists.
public struct ImageIdentity: Hashable, Sendable {
    public let image: any ImageReader

    public init(_ image: any ImageReader) { self.image = image }

    public static func == (a: ImageIdentity, b: ImageIdentity) -> Bool { a.image === b.image }
    public func hash(into h: inout Hasher) { h.combine(ObjectIdentifier(image)) }
}
