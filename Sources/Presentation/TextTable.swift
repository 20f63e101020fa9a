// TextTable: prettytable-style ASCII tables (backy 2.4's `status` and the
// console's `jobs`), with per-column left or right alignment.

public struct TextTable {
    public enum Align { case left, right }
    public var headers: [String]
    public var align: [Align]
    public var rows: [[String]] = []

    public init(_ headers: [String], align: [Align]? = nil) {
        self.headers = headers
        self.align = align ?? headers.map { _ in .left }
    }

    public mutating func add(_ row: [String]) { rows.append(row) }

    public func render() -> String {
        var widths = headers.map { $0.count }
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        let sep = "+" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "+") + "+"
        func line(_ cells: [String], header: Bool) -> String {
            var parts: [String] = []
            for (i, w) in widths.enumerated() {
                let c = i < cells.count ? cells[i] : ""
                let fill = String(repeating: " ", count: w - c.count)
                // prettytable centres nothing here: headers follow the column's alignment.
                parts.append(" " + (align[i] == .right ? fill + c : c + fill) + " ")
            }
            return "|" + parts.joined(separator: "|") + "|"
        }
        var out = [sep, line(headers, header: true), sep]
        for r in rows { out.append(line(r, header: false)) }
        out.append(sep)
        return out.joined(separator: "\n")
    }
}
