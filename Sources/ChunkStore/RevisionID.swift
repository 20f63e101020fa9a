// RevisionID: new revision ids, 22 characters of base 57 from a random
// 128-bit number, the shape of Python shortuuid.uuid() used by backy 2.4.

public enum RevisionID {
    public static let alphabet: [Character] = Array("23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")

    /// A fresh random id.
    public static func make() -> String {
        var rng = SystemRandomNumberGenerator()
        return encode(hi: rng.next(), lo: rng.next())
    }

    /// Base-57 digits of the 128-bit number hi:lo, least significant first
    /// (as shortuuid 0.4 writes them), padded to 22 characters.
    public static func encode(hi: UInt64, lo: UInt64) -> String {
        var h = hi, l = lo
        var out: [Character] = []
        while h != 0 || l != 0 {
            // Divide the 128-bit value by 57.
            let (qh, rh) = h.quotientAndRemainder(dividingBy: 57)
            let (ql, rl) = UInt64(57).dividingFullWidth((high: rh, low: l))
            h = qh
            l = ql
            out.append(alphabet[Int(rl)])
        }
        while out.count < 22 { out.append(alphabet[0]) }
        return String(out)
    }

    /// Whether a string can be used as a revision id in file names.
    public static func isSafe(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 64 && s.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
            && s.unicodeScalars.allSatisfy { $0.isASCII }
    }
}
