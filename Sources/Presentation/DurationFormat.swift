// DurationFormat: lengths of time for people: a backup's duration as backy
// 2.4 prints it ("31.1 s", in `status` and the scheduler's status file) and
// an age ("3 d 4 h", "5 h 2 min", "40 s").
import Foundation

public enum DurationFormat {
    /// Seconds rounded to one decimal, as backy 2.4 prints them.
    public static func seconds(_ d: Double) -> String {
        String(format: "%.1f s", (d * 10).rounded() / 10)
    }

    /// "3 d 4 h", "5 h 2 min", "40 s".
    public static func age(_ seconds: Double) -> String {
        let s = Int(max(0, seconds))
        if s >= 86400 { return "\(s / 86400) d \((s % 86400) / 3600) h" }
        if s >= 3600 { return "\(s / 3600) h \((s % 3600) / 60) min" }
        if s >= 60 { return "\(s / 60) min" }
        return "\(s) s"
    }
}
