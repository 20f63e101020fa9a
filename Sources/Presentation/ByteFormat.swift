// ByteFormat: backy 2.4's flexible byte formatter ("0 Bytes", "1 Byte",
// "2.44 kiB", "1.00 GiB"), used in status tables.

import Foundation

public enum ByteFormat {
    public static func flexible(_ value: Int64) -> String {
        let units = ["kiB", "MiB", "GiB", "TiB"]
        // magnitude, not abs: abs(Int64.min) traps (a damaged .rev may say so).
        if value.magnitude < 1024 {
            return value == 1 ? "1 Byte" : "\(value) Bytes"
        }
        var v = Double(value) / 1024
        for (i, u) in units.enumerated() {
            if abs(v) < 1024 || i == units.count - 1 {
                return String(format: "%.2f", v) + " " + u
            }
            v /= 1024
        }
        return "\(value) Bytes"
    }
}
