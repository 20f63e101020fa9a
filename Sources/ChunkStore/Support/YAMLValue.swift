// YAMLValue: a small YAML document model for config and revision files:
// screened for anchors, aliases and deep nesting (libyaml's events), then
// parsed through Yams (libyaml) with line numbers kept for error messages,
// and emitted in the style PyYAML's safe_dump uses (sorted keys, flow style
// for collections of scalars), which backy 2.4 writes and reads.
import CLibYAML
import Foundation
import Yams

public indirect enum YAMLValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case list([YAMLValue])
    case map(YAMLMap)

    public var string: String? {
        switch self {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .bool(let b): return b ? "true" : "false"
        default: return nil
        }
    }
    public var int: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d == d.rounded() && abs(d) < 9e18: return Int64(d)
        case .string(let s): return Int64(s)
        default: return nil
        }
    }
    public var double: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .string(let s): return Double(s)
        default: return nil
        }
    }
    public var bool: Bool? {
        switch self {
        case .bool(let b): return b
        case .string(let s):
            switch s.lowercased() {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            default: return nil
            }
        default: return nil
        }
    }
    public var map: YAMLMap? { if case .map(let m) = self { return m } else { return nil } }
    public var list: [YAMLValue]? { if case .list(let l) = self { return l } else { return nil } }
    public var isNull: Bool { self == .null }

    /// A short name of the value's kind for error messages.
    public var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int: return "an integer"
        case .double: return "a number"
        case .string: return "a string"
        case .list: return "a list"
        case .map: return "a mapping"
        }
    }
}

/// An ordered mapping with string keys, remembering each value's line.
public struct YAMLMap: Equatable, Sendable {
    public private(set) var keys: [String] = []
    private var values: [String: YAMLValue] = [:]
    public private(set) var lines: [String: Int] = [:]

    public init() {}
    public init(_ pairs: [(String, YAMLValue)]) {
        for (k, v) in pairs { self[k] = v }
    }

    public subscript(key: String) -> YAMLValue? {
        get { values[key] }
        set {
            if let v = newValue {
                if values[key] == nil { keys.append(key) }
                values[key] = v
            } else if values[key] != nil {
                values[key] = nil
                keys.removeAll { $0 == key }
                lines[key] = nil
            }
        }
    }

    public func line(of key: String) -> Int? { lines[key] }
    mutating func setLine(_ key: String, _ line: Int) { lines[key] = line }

    public var isEmpty: Bool { keys.isEmpty }
    public var count: Int { keys.count }
    public var pairs: [(String, YAMLValue)] { keys.map { ($0, values[$0]!) } }

    public static func == (a: YAMLMap, b: YAMLMap) -> Bool { a.keys == b.keys && a.values == b.values }
}

public enum YAML {
    /// How deeply collections may nest (backy's files nest 3 levels).
    public static let maxDepth = 64

    /// Parses one YAML document. Errors carry the line number. Anchors,
    /// aliases and nesting deeper than `maxDepth` are refused before the
    /// document is composed (see `screen`).
    public static func parse(_ text: String, source: String = "YAML") throws -> YAMLValue {
        try screen(text, source: source)
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch let e as YamlError {
            throw BackyError(.usage, "\(source): invalid YAML: \(describe(e))")
        } catch {
            throw BackyError(.usage, "\(source): invalid YAML: \(error)")
        }
        guard let n = node else { return .null }
        return try convert(n, source: source)
    }

    /// Walks libyaml's events (no document is built) and refuses anchors
    /// and aliases — composing would expand them, so a few hundred bytes
    /// (`&a [*a, *a, …]` nested) become gigabytes — and nesting deeper than
    /// `maxDepth` (which would exhaust the stack of a recursive composer).
    /// Syntax errors are left to the parser, which reports them better.
    static func screen(_ text: String, source: String) throws {
        var bytes = Array(text.utf8)
        if bytes.isEmpty { return }
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw BackyError(.other, "\(source): cannot initialise the YAML parser")
        }
        defer { yaml_parser_delete(&parser) }
        try bytes.withUnsafeMutableBufferPointer { b in
            yaml_parser_set_input_string(&parser, b.baseAddress, b.count)
            var depth = 0
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return }
                defer { yaml_event_delete(&event) }
                let line = Int(event.start_mark.line) + 1
                func refuse(_ what: String) -> BackyError {
                    BackyError(.usage, "\(source): line \(line): \(what)")
                }
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return
                case YAML_ALIAS_EVENT:
                    throw refuse("YAML aliases (*name) are not supported")
                case YAML_SCALAR_EVENT:
                    if event.data.scalar.anchor != nil { throw refuse("YAML anchors (&name) are not supported") }
                case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                    let anchor = event.type == YAML_SEQUENCE_START_EVENT
                        ? event.data.sequence_start.anchor : event.data.mapping_start.anchor
                    if anchor != nil { throw refuse("YAML anchors (&name) are not supported") }
                    depth += 1
                    if depth > maxDepth { throw refuse("collections nested deeper than \(maxDepth) levels") }
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    depth -= 1
                default:
                    break
                }
            }
        }
    }

    private static func describe(_ e: YamlError) -> String {
        switch e {
        case .scanner(let context, let problem, let mark, _):
            return "\(problem)\(context.map { " " + $0.text } ?? "") at line \(mark.line)"
        case .parser(let context, let problem, let mark, _):
            return "\(problem)\(context.map { " " + $0.text } ?? "") at line \(mark.line)"
        case .composer(let context, let problem, let mark, _):
            return "\(problem)\(context.map { " " + $0.text } ?? "") at line \(mark.line)"
        default:
            return "\(e)"
        }
    }

    private static func convert(_ n: Node, source: String) throws -> YAMLValue {
        switch n {
        case .scalar(let s):
            if s.style != .plain && s.style != .any { return .string(s.string) }
            return resolvePlain(s.string)
        case .sequence(let seq):
            return .list(try seq.map { try convert($0, source: source) })
        case .mapping(let m):
            var out = YAMLMap()
            for (k, v) in m {
                guard case .scalar(let ks) = k else {
                    throw BackyError(.usage, "\(source): line \(k.mark?.line ?? 0): mapping keys must be scalars")
                }
                out[ks.string] = try convert(v, source: source)
                if let line = k.mark?.line { out.setLine(ks.string, line) }
            }
            return .map(out)
        case .alias:
            throw BackyError(.usage, "\(source): YAML aliases are not supported")
        }
    }

    /// Resolves a plain scalar like YAML 1.1 core types (null, bool, int, float).
    static func resolvePlain(_ s: String) -> YAMLValue {
        switch s {
        case "", "~", "null", "Null", "NULL": return .null
        case "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON": return .bool(true)
        case "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF": return .bool(false)
        default: break
        }
        if let i = Int64(s) { return .int(i) }
        if s.first.map({ $0.isNumber || $0 == "-" || $0 == "+" || $0 == "." }) == true,
           s.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }),
           let d = Double(s), d.isFinite {
            return .double(d)
        }
        return .string(s)
    }

    // MARK: emitting

    /// Emits a mapping document in PyYAML safe_dump style (keys sorted;
    /// collections that contain only scalars in flow style). `raw` values
    /// are written unquoted as given (used for timestamps).
    public static func emit(_ m: YAMLMap) -> String {
        var out = ""
        emitMap(m, indent: 0, into: &out)
        return out
    }

    private static func isScalar(_ v: YAMLValue) -> Bool {
        switch v {
        case .list, .map: return false
        default: return true
        }
    }

    private static func isFlowable(_ v: YAMLValue) -> Bool {
        switch v {
        case .list(let l): return l.allSatisfy(isScalar)
        case .map(let m): return m.pairs.allSatisfy { isScalar($0.1) }
        default: return true
        }
    }

    private static func emitMap(_ m: YAMLMap, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for k in m.keys.sorted() {
            let v = m[k]!
            if isFlowable(v) {
                out += pad + scalarText(k) + ": " + flow(v) + "\n"
            } else if case .map(let sub) = v {
                out += pad + scalarText(k) + ":\n"
                emitMap(sub, indent: indent + 2, into: &out)
            } else if case .list(let l) = v {
                out += pad + scalarText(k) + ":\n"
                for item in l {
                    if case .map(let sub) = item, !isFlowable(item) {
                        var inner = ""
                        emitMap(sub, indent: indent + 2, into: &inner)
                        out += pad + "- " + inner.dropFirst(indent + 2)
                    } else {
                        out += pad + "- " + flow(item) + "\n"
                    }
                }
            }
        }
    }

    /// A value in flow style on one line.
    public static func flow(_ v: YAMLValue) -> String {
        switch v {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d):
            if d.isNaN { return ".nan" }
            if d.isInfinite { return d > 0 ? ".inf" : "-.inf" }
            var s = String(d)
            if !s.contains(".") && !s.contains("e") { s += ".0" }
            return s
        case .string(let s): return scalarText(s)
        case .list(let l): return "[" + l.map(flow).joined(separator: ", ") + "]"
        case .map(let m): return "{" + m.keys.sorted().map { scalarText($0) + ": " + flow(m[$0]!) }.joined(separator: ", ") + "}"
        }
    }

    /// A string as a YAML scalar: plain when that reads back as the same
    /// string, else single-quoted.
    public static func scalarText(_ s: String) -> String {
        if isPlainSafe(s) { return s }
        return "'" + s.replacingOccurrences(of: "'", with: "''") + "'"
    }

    static func isPlainSafe(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first else { return false }
        if case .string = resolvePlain(s) {} else { return false }
        // Timestamps and other implicit types must be quoted to stay strings.
        if looksLikeTimestamp(s) { return false }
        let indicators: Set<Character> = ["-", "?", ":", ",", "[", "]", "{", "}", "#", "&", "*", "!", "|", ">", "'", "\"", "%", "@", "`"]
        if indicators.contains(Character(first)) {
            // "-x", "/..." are fine in PyYAML only for some; keep it simple.
            if !(first == "-" && s.count > 1 && !s.hasPrefix("- ")) { return false }
        }
        if s.hasSuffix(" ") || s.hasPrefix(" ") || s.hasSuffix(":") { return false }
        if s.contains(": ") || s.contains(" #") || s.contains("\n") || s.contains("\t") { return false }
        for u in s.unicodeScalars where u.value < 0x20 || u.value == 0x7f || u.value > 0x7e { return false }
        if s.contains(",") || s.contains("[") || s.contains("]") || s.contains("{") || s.contains("}") {
            return false  // would break flow collections
        }
        return true
    }

    static func looksLikeTimestamp(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard u.count >= 10 else { return false }
        func digit(_ i: Int) -> Bool { u[i] >= 48 && u[i] <= 57 }
        return digit(0) && digit(1) && digit(2) && digit(3) && u[4] == 45
    }
}
