// YAMLValue: a small YAML document model for config, revision and status
// files, built straight from libyaml's events in one pass: anchors, aliases,
// nesting deeper than 64 levels and more values than the file's size can
// justify are refused as they appear, so no document can expand or balloon
// in memory (a value costs a few dozen bytes; see `maxValues`). Line numbers
// are kept for error messages. Emitted in the style PyYAML's safe_dump uses
// (sorted keys, flow style for collections of scalars), which backy 2.4
// writes and reads.
import CLibYAML
import Foundation

public enum YAMLValue: Equatable, Sendable {
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
/// Stored as one array of entries (small maps are searched, maps of more
/// than 16 keys get an index), so a map costs little more than its entries.
public struct YAMLMap: Equatable, Sendable {
    private struct Entry: Sendable {
        var key: String
        var value: YAMLValue
        var line: Int32
    }
    private var entries: [Entry] = []
    private var index: [String: Int]?
    private static let indexFrom = 16

    public init() {}
    public init(_ pairs: [(String, YAMLValue)]) {
        for (k, v) in pairs { self[k] = v }
    }

    private func position(of key: String) -> Int? {
        if let index { return index[key] }
        return entries.firstIndex { $0.key == key }
    }

    private mutating func reindex() {
        guard entries.count > YAMLMap.indexFrom else { index = nil; return }
        var ix = [String: Int](minimumCapacity: entries.count)
        for (i, e) in entries.enumerated() { ix[e.key] = i }
        index = ix
    }

    public subscript(key: String) -> YAMLValue? {
        get { position(of: key).map { entries[$0].value } }
        set {
            if let v = newValue {
                if let i = position(of: key) {
                    entries[i].value = v
                } else {
                    entries.append(Entry(key: key, value: v, line: 0))
                    if index != nil { index![key] = entries.count - 1 } else if entries.count > YAMLMap.indexFrom { reindex() }
                }
            } else if let i = position(of: key) {
                entries.remove(at: i)
                reindex()
            }
        }
    }

    /// The keys in the order they first appeared.
    public var keys: [String] { entries.map(\.key) }

    /// The line (1-based) of a key read from YAML text, nil if not read.
    public func line(of key: String) -> Int? {
        guard let i = position(of: key), entries[i].line > 0 else { return nil }
        return Int(entries[i].line)
    }

    /// Sets a value read from YAML text at `line` (a key given twice keeps
    /// its first place and takes the last value and line).
    mutating func set(_ key: String, _ value: YAMLValue, line: Int) {
        self[key] = value
        if let i = position(of: key) { entries[i].line = Int32(clamping: line) }
    }

    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }
    public var pairs: [(String, YAMLValue)] { entries.map { ($0.key, $0.value) } }

    /// Same keys in the same order with the same values (lines do not count).
    public static func == (a: YAMLMap, b: YAMLMap) -> Bool {
        a.entries.count == b.entries.count
            && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}

public enum YAML {
    /// How deeply collections may nest (backy's files nest 3 levels).
    public static let maxDepth = 64

    /// How many values (scalars and collections) a document of `size` bytes
    /// may have: 65,536, plus one per 8 bytes. backy's own files have one
    /// per 8 to 10 bytes (a status file of 10,000 jobs: 230,000 in 2.1 MB;
    /// a configuration of 10,000 jobs: 90,000 in 800 KB); a document of
    /// `[[],[],…]` has one per 3 bytes. A value takes a few dozen bytes, so
    /// a document takes at most a few times its size (plus a few MiB).
    public static func maxValues(size: Int) -> Int { 65536 + size / 8 }

    /// Parses one YAML document. Errors carry the line number. Anchors,
    /// aliases, nesting deeper than `maxDepth` and more values than
    /// `maxValues` are refused where they appear.
    public static func parse(_ text: String, source: String = "YAML") throws -> YAMLValue {
        var bytes = Array(text.utf8)
        if bytes.isEmpty { return .null }
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw BackyError(.other, "\(source): cannot initialise the YAML parser")
        }
        defer { yaml_parser_delete(&parser) }
        return try bytes.withUnsafeMutableBufferPointer { b -> YAMLValue in
            yaml_parser_set_input_string(&parser, b.baseAddress, b.count)
            var builder = Builder(source: source, maxValues: maxValues(size: b.count))
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { throw syntaxError(parser, source: source) }
                defer { yaml_event_delete(&event) }
                if let done = try builder.take(&event) { return done }
            }
        }
    }

    /// A libyaml error as one line.
    private static func syntaxError(_ p: yaml_parser_t, source: String) -> BackyError {
        let problem = p.problem.map { String(cString: $0) } ?? "unknown error"
        if p.error == YAML_READER_ERROR {
            return BackyError(.usage, "\(source): invalid YAML: \(problem) at byte \(p.problem_offset)")
        }
        let context = p.context.map { " " + String(cString: $0) } ?? ""
        return BackyError(.usage, "\(source): invalid YAML: \(problem)\(context) at line \(p.problem_mark.line + 1)")
    }

    /// Builds the document from the events, one at a time. Open
    /// collections live on stacks (lists and maps apart), so a collection
    /// grows in place however many values it gets.
    private struct Builder {
        let source: String
        let maxValues: Int
        /// Whether each open collection is a list (else a map).
        var kinds: [Bool] = []
        var lists: [[YAMLValue]] = []
        var maps: [YAMLMap] = []
        /// Per open map: the key (with its line) waiting for its value.
        var keys: [(String, Int)?] = []
        var values = 0
        var documents = 0
        var root: YAMLValue?

        init(source: String, maxValues: Int) {
            self.source = source
            self.maxValues = maxValues
        }

        func refuse(_ line: Int, _ what: String) -> BackyError {
            BackyError(.usage, "\(source): line \(line): \(what)")
        }

        /// An open map waits for a key.
        var expectingKey: Bool { kinds.last == false && keys[keys.count - 1] == nil }

        /// Takes one event; returns the document at the end of the stream.
        mutating func take(_ event: inout yaml_event_t) throws -> YAMLValue? {
            let line = Int(event.start_mark.line) + 1
            switch event.type {
            case YAML_STREAM_END_EVENT:
                return root ?? .null
            case YAML_DOCUMENT_START_EVENT:
                documents += 1
                if documents > 1 {
                    throw BackyError(.usage, "\(source): invalid YAML: expected a single document in the stream, but found another document at line \(line)")
                }
            case YAML_ALIAS_EVENT:
                throw refuse(line, "YAML aliases (*name) are not supported")
            case YAML_SCALAR_EVENT:
                let s = event.data.scalar
                if s.anchor != nil { throw refuse(line, "YAML anchors (&name) are not supported") }
                try count(line)
                let text = s.value.map { String(decoding: UnsafeBufferPointer(start: $0, count: s.length), as: UTF8.self) } ?? ""
                if expectingKey {
                    keys[keys.count - 1] = (text, line)
                } else {
                    add(s.style == YAML_PLAIN_SCALAR_STYLE ? YAML.resolvePlain(text) : .string(text))
                }
            case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                let isList = event.type == YAML_SEQUENCE_START_EVENT
                let anchor = isList ? event.data.sequence_start.anchor : event.data.mapping_start.anchor
                if anchor != nil { throw refuse(line, "YAML anchors (&name) are not supported") }
                if expectingKey { throw refuse(line, "mapping keys must be scalars") }
                if kinds.count >= YAML.maxDepth { throw refuse(line, "collections nested deeper than \(YAML.maxDepth) levels") }
                try count(line)
                kinds.append(isList)
                if isList { lists.append([]) } else { maps.append(YAMLMap()); keys.append(nil) }
            case YAML_SEQUENCE_END_EVENT:
                kinds.removeLast()
                add(.list(lists.removeLast()))
            case YAML_MAPPING_END_EVENT:
                kinds.removeLast()
                keys.removeLast()
                add(.map(maps.removeLast()))
            default:
                break  // stream and document starts/ends without content
            }
            return nil
        }

        mutating func count(_ line: Int) throws {
            values += 1
            if values > maxValues {
                throw refuse(line, "more than \(maxValues) YAML values in one document (not a file backy wrote)")
            }
        }

        /// Adds a finished value to the open collection (or makes it the
        /// document).
        mutating func add(_ v: YAMLValue) {
            switch kinds.last {
            case nil:
                root = v
            case true?:
                lists[lists.count - 1].append(v)
            case false?:
                let (key, line) = keys[keys.count - 1]!
                maps[maps.count - 1].set(key, v, line: line)
                keys[keys.count - 1] = nil
            }
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
    /// collections that contain only scalars in flow style). `raw` gives
    /// top-level keys whose values are written unquoted as given (used for
    /// timestamps); they replace keys of `m` of the same name.
    public static func emit(_ m: YAMLMap, raw: [String: String] = [:]) -> String {
        var out = ""
        emitMap(m, indent: 0, raw: raw, into: &out)
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

    /// libyaml reads a simple (implicit) key only up to 1024 characters
    /// from its start to its `:`. Keys written longer than this (a key of
    /// 200 non-ASCII characters is 1,200 once escaped) are written as
    /// explicit keys (`? key` then `: value`), which have no such limit.
    static let simpleKeyLimit = 1000

    /// `key:` as the start of a block mapping entry, explicit when long.
    private static func blockKey(_ k: String, pad: String) -> String {
        let t = scalarText(k)
        return t.utf8.count > simpleKeyLimit ? pad + "? " + t + "\n" + pad + ":" : pad + t + ":"
    }

    private static func emitMap(_ m: YAMLMap, indent: Int, raw: [String: String] = [:], into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for k in raw.isEmpty ? m.keys.sorted() : Set(m.keys).union(raw.keys).sorted() {
            if let text = raw[k] {
                out += blockKey(k, pad: pad) + " " + text + "\n"
                continue
            }
            let v = m[k]!
            if isFlowable(v) {
                out += blockKey(k, pad: pad) + " " + flow(v) + "\n"
            } else if case .map(let sub) = v {
                out += blockKey(k, pad: pad) + "\n"
                emitMap(sub, indent: indent + 2, into: &out)
            } else if case .list(let l) = v {
                out += blockKey(k, pad: pad) + "\n"
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
        case .map(let m):
            return "{" + m.keys.sorted().map { k in
                let t = scalarText(k)
                return (t.utf8.count > simpleKeyLimit ? "? " + t + " : " : t + ": ") + flow(m[k]!)
            }.joined(separator: ", ") + "}"
        }
    }

    /// A string as a YAML scalar: plain when that reads back as the same
    /// string; single-quoted when it is printable ASCII; else double-quoted
    /// with escapes (as PyYAML's safe_dump writes it): a single-quoted
    /// scalar folds its line breaks (and NEL, U+2028, U+2029) and cannot
    /// hold control characters, so such a string would read back changed,
    /// or the file not at all.
    public static func scalarText(_ s: String) -> String {
        if isPlainSafe(s) { return s }
        if s.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7F }) {
            return "'" + s.replacingOccurrences(of: "'", with: "''") + "'"
        }
        return doubleQuoted(s)
    }

    /// `s` double-quoted: printable ASCII as is, everything else escaped.
    static func doubleQuoted(_ s: String) -> String {
        func hex(_ v: UInt32, _ digits: Int) -> String {
            let h = String(v, radix: 16, uppercase: true)
            return String(repeating: "0", count: max(0, digits - h.count)) + h
        }
        var out = "\""
        for u in s.unicodeScalars {
            switch u.value {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x0A: out += "\\n"
            case 0x09: out += "\\t"
            case 0x0D: out += "\\r"
            case 0x20..<0x7F: out.unicodeScalars.append(u)
            case 0..<0x100: out += "\\x" + hex(u.value, 2)
            case 0..<0x10000: out += "\\u" + hex(u.value, 4)
            default: out += "\\U" + hex(u.value, 8)
            }
        }
        return out + "\""
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
