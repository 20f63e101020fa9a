// Counted: "1 revision", "3 revisions" — a count with its noun, for the
// result lines of the command line and the operations.
public enum Counted {
    public static func text(_ n: Int, _ noun: String) -> String {
        "\(n) \(noun)\(n == 1 ? "" : "s")"
    }
}
