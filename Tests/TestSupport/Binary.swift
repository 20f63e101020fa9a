// Binary: what tests that run the built `backy` need: where it is
// ($BACKY_BIN, or next to the test bundle: swift build --build-tests builds
// it there), and a free TCP port for the servers it starts.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum BackyBinary {
    public static var path: String? {
        if let b = ProcessInfo.processInfo.environment["BACKY_BIN"] { return b }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let cand = dir.appendingPathComponent("backy").path
            if FileManager.default.isExecutableFile(atPath: cand) { return cand }
            dir = dir.deletingLastPathComponent()
        }
        for cand in [".build/debug/backy", ".build/release/backy"] where FileManager.default.isExecutableFile(atPath: cand) {
            return FileManager.default.currentDirectoryPath + "/" + cand
        }
        return nil
    }
}

/// A TCP port on 127.0.0.1 that nobody listens on right now.
public func freeTCPPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            _ = bind(fd, $0, len)
            _ = getsockname(fd, $0, &len)
        }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}
