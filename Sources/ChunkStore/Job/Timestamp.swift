// Timestamp: UTC timestamps as backy writes and reads them in `.rev` files
// ("2019-04-17 10:22:51.123456+00:00"), parsing every shape backy 2.4 left
// behind (naive, offset or Z, "T" or space, with or without fraction, and
// legacy floats of epoch seconds).
import Foundation

public enum Timestamp {
    /// Days since 1970-01-01 of a proleptic Gregorian date.
    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (m + 9) % 12
        let doy = (153 * mp + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    static func civilFromDays(_ z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }

    /// Broken-down UTC time.
    public struct Parts: Equatable {
        public var year, month, day, hour, minute, second, microsecond: Int
    }

    /// The instants backy reads from and writes to metadata: 0001-01-01
    /// 00:00:00 to 9999-12-31 23:59:59 UTC (four-digit years).
    public static let earliest: TimeInterval = -62_135_596_800
    public static let latest: TimeInterval = 253_402_300_799

    /// Whether `t` (seconds since the epoch) lies in that range.
    public static func isRepresentable(_ t: Double) -> Bool {
        t.isFinite && t >= earliest && t < latest + 1
    }

    public static func parts(_ date: Date) -> Parts {
        // Clamped to four-digit years, so no date can overflow the
        // arithmetic below (a damaged file may say 1e300 or NaN).
        var t = date.timeIntervalSince1970
        if t.isNaN { t = 0 }
        t = min(max(t, earliest), latest)
        // Round to whole microseconds first so formatting never shows 1000000.
        let totalMicros = Int64((t * 1_000_000).rounded())
        var secs = totalMicros / 1_000_000
        var micros = totalMicros % 1_000_000
        if micros < 0 { micros += 1_000_000; secs -= 1 }
        var days = Int(secs / 86400)
        var rem = Int(secs % 86400)
        if rem < 0 { rem += 86400; days -= 1 }
        let (y, m, d) = civilFromDays(days)
        return Parts(year: y, month: m, day: d, hour: rem / 3600, minute: (rem % 3600) / 60,
                     second: rem % 60, microsecond: Int(micros))
    }

    private static func pad(_ v: Int, _ n: Int) -> String {
        let s = String(v)
        return s.count >= n ? s : String(repeating: "0", count: n - s.count) + s
    }

    /// Date and time joined by `separator`, with microseconds when
    /// `fraction` and there are any, followed by `zone`.
    private static func render(_ date: Date, separator: String, fraction: Bool, zone: String) -> String {
        let p = parts(date)
        var s = "\(pad(p.year, 4))-\(pad(p.month, 2))-\(pad(p.day, 2))\(separator)\(pad(p.hour, 2)):\(pad(p.minute, 2)):\(pad(p.second, 2))"
        if fraction && p.microsecond != 0 { s += "." + pad(p.microsecond, 6) }
        return s + zone
    }

    /// "YYYY-MM-DD HH:MM:SS[.ffffff]+00:00", as PyYAML writes an aware UTC datetime.
    public static func format(_ date: Date) -> String {
        render(date, separator: " ", fraction: true, zone: "+00:00")
    }

    /// "YYYY-MM-DD HH:MM:SS" (status tables).
    public static func formatSeconds(_ date: Date) -> String {
        render(date, separator: " ", fraction: false, zone: "")
    }

    /// "YYYY-MM-DDTHH:MM:SS[.ffffff]Z", ISO 8601 for JSON output.
    public static func iso8601(_ date: Date) -> String {
        render(date, separator: "T", fraction: true, zone: "Z")
    }

    /// "YYYY-MM-DD" of a date (UTC).
    public static func day(_ date: Date) -> String {
        let p = parts(date)
        return "\(pad(p.year, 4))-\(pad(p.month, 2))-\(pad(p.day, 2))"
    }

    public static func date(year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0, microsecond: Int = 0) -> Date {
        let days = daysFromCivil(year, month, day)
        let secs = Double(days) * 86400 + Double(hour * 3600 + minute * 60 + second) + Double(microsecond) / 1e6
        return Date(timeIntervalSince1970: secs)
    }

    /// Parses the timestamp shapes found in `.rev` files; nil if none fits.
    public static func parse(_ text: String) -> Date? {
        let s = text.trimmingCharacters(in: .whitespaces)
        if let d = Double(s) {
            // Legacy float (or int) of seconds since the epoch.
            return isRepresentable(d) ? Date(timeIntervalSince1970: d) : nil
        }
        let u = Array(s.utf8)
        var i = 0
        func num(_ n: Int) -> Int? {
            guard i + n <= u.count else { return nil }
            var v = 0
            for k in 0..<n {
                let c = u[i + k]
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int(c - 48)
            }
            i += n
            return v
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < u.count, u[i] == c else { return false }
            i += 1
            return true
        }
        guard let y = num(4), expect(45), let mo = num(2), expect(45), let d = num(2) else { return nil }
        guard (1...12).contains(mo), (1...31).contains(d) else { return nil }
        var hh = 0, mm = 0, ss = 0, micros = 0
        if i < u.count {
            guard u[i] == 84 || u[i] == 116 || u[i] == 32 else { return nil }  // T, t, space
            i += 1
            while i < u.count && u[i] == 32 { i += 1 }
            // Hours may have one digit in YAML timestamps.
            guard let h1 = num(1) else { return nil }
            hh = h1
            if let h2 = num(1) { hh = hh * 10 + h2 }
            guard expect(58), let m = num(2), expect(58), let sec = num(2) else { return nil }
            mm = m; ss = sec
            if i < u.count && u[i] == 46 {
                i += 1
                var digits = 0
                var frac = 0
                while i < u.count && u[i] >= 48 && u[i] <= 57 {
                    if digits < 6 { frac = frac * 10 + Int(u[i] - 48); digits += 1 }
                    i += 1
                }
                guard digits > 0 else { return nil }
                for _ in digits..<6 { frac *= 10 }
                micros = frac
            }
            while i < u.count && u[i] == 32 { i += 1 }
        }
        guard hh < 24, mm < 60, ss < 61 else { return nil }
        var offset = 0
        if i < u.count {
            if u[i] == 90 || u[i] == 122 {  // Z
                i += 1
            } else if u[i] == 43 || u[i] == 45 {
                let sign = u[i] == 45 ? -1 : 1
                i += 1
                guard let oh = num(2) else { return nil }
                var om = 0
                if i < u.count {
                    _ = expect(58)
                    guard let m = num(2) else { return nil }
                    om = m
                }
                offset = sign * (oh * 3600 + om * 60)
            } else {
                return nil
            }
        }
        guard i == u.count else { return nil }
        let base = date(year: y, month: mo, day: d, hour: hh, minute: mm, second: ss, microsecond: micros)
        let t = base.addingTimeInterval(Double(-offset))
        return isRepresentable(t.timeIntervalSince1970) ? t : nil
    }

    /// Parses "YYYY-MM-DD" (UTC midnight); nil otherwise.
    public static func parseDay(_ s: String) -> Date? {
        let parts = s.split(separator: "-")
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]),
              (1...12).contains(m), (1...31).contains(d) else { return nil }
        let date = Timestamp.date(year: y, month: m, day: d)
        // Reject days that roll over (2023-02-30).
        return Timestamp.day(date) == s ? date : nil
    }
}
