// Version: backy's version and the on-disk formats this version writes and
// reads, for `backy --version`, the console banner and the metrics.
import Foundation

public enum BackyVersion {
    /// The program's version.
    public static let version = "3.0.0"

    /// The store format this version writes (docs/store-format.md).
    public static var storeFormat: String {
        "\(BackendType.nativeName) (chunk files v\(ChunkHeader.version), maps v\(ChunkMap.version))"
    }

    /// `backy --version`: the version, the store format written, the formats read.
    public static var description: String {
        """
        backy \(version)
        store format: \(storeFormat); also reads backy 2.x revisions (chunked v1/v2, cowfile)
        """
    }
}
