// CowfileImage: a backy 2.x cowfile revision as an image: `<id>` is the raw
// image itself, read at the offset each chunk covers.
import Foundation

/// A backy 2.x cowfile revision: `<id>` is the raw image. There are no
/// checksums to check; chunks are named by the image and their offset.
public final class CowfileImage: ImageReader, Sendable {
    /// The raw image, opened once.
    let object: StoredObject
    /// The image's name (`<id>`), for messages.
    public let name: String
    public let imageSize: UInt64
    public let chunkSize = LegacyMap.chunkSize

    public init(object: StoredObject, name: String) {
        self.object = object
        self.name = name
        imageSize = UInt64(object.size)
    }

    public var chunkCount: Int { ChunkMap.chunkCount(imageSize, chunkSize) }
    public func isZero(_ i: Int) -> Bool { false }
    public func chunkName(_ i: Int) -> String { "\(name)@\(offset(of: i))" }

    public func read(_ i: Int, into out: UnsafeMutableRawBufferPointer, workspace: ChunkWorkspace) throws -> Int {
        let len = length(of: i)
        let n: Int
        do { n = try object.read(into: out.baseAddress!, count: len, at: Int(offset(of: i))) } catch {
            throw ChunkReadError(name: chunkName(i), fault: .io("\(error)"))
        }
        if n != len { throw ChunkReadError(name: chunkName(i), fault: .truncated("\(n) of \(len) bytes")) }
        return n
    }
}
