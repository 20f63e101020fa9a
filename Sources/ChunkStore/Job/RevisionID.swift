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

    private static let alphabetBytes = Set(alphabet.map { $0.asciiValue! })

    /// Whether a string is a revision id, the only names that may become
    /// paths (`<id>.rev`, `<id>.map`, `<id>`): 22 characters of the base-57
    /// alphabet (shortuuid, every backy since 2.0), or the UUID shape
    /// `8-4-4-4-12` hex digits of older revisions. Nothing else: no dots,
    /// slashes, or names like `config` and `chunks`.
    public static func isWellFormed(_ s: String) -> Bool {
        let u = Array(s.utf8)
        if u.count == 22 { return u.allSatisfy { alphabetBytes.contains($0) } }
        if u.count == 36 {
            for (i, c) in u.enumerated() {
                if i == 8 || i == 13 || i == 18 || i == 23 {
                    if c != UInt8(ascii: "-") { return false }
                } else if !((c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70)) {
                    return false
                }
            }
            return true
        }
        return false
    }
}
