// JobPattern.swift — the regular expressions of the console's `jobs REGEX`,
// matched without backtracking: the pattern is compiled to a small program
// and run as a Thompson NFA (all alternatives in step), so matching takes
// time proportional to name length × pattern size whatever the pattern —
// `(a+)+$` cannot stall the console. The syntax is the common part of
// Python's `re` (which backy 2.4 used) and POSIX ERE: literals, `.`,
// classes `[a-z]`, `[^...]`, `\d \w \s \D \W \S`, anchors `^ $ \A \Z \b \B`,
// groups `(...)`, `(?:...)`, `(?P<name>...)`, alternation `|`, quantifiers
// `* + ? {m} {m,} {m,n}` (lazy forms accepted: for a yes/no search they
// mean the same) and a leading `(?i)`. Backreferences and lookaround need
// backtracking and are refused with a message. Like `re.search`, a pattern
// matches anywhere in the name unless anchored.

import Foundation

public struct JobPatternError: Error, Equatable, CustomStringConvertible {
    public let description: String
}

public struct JobPattern: Sendable {
    enum Inst: Sendable {
        case char(ClassSet)
        case split(Int, Int)
        case jump(Int)
        case begin, end
        case boundary(Bool)
        case match
    }

    /// A set of characters: ranges, the \d \w \s classes, negation.
    struct ClassSet: Sendable {
        var ranges: [ClosedRange<UInt32>] = []
        var classes: [(kind: Character, negated: Bool)] = []
        var negated = false
        var anyButNewline = false
        var caseless = false

        static func single(_ c: UInt32, caseless: Bool) -> ClassSet {
            var s = ClassSet()
            s.ranges = [c...c]
            s.caseless = caseless
            return s
        }

        func contains(_ c: UInt32) -> Bool {
            if anyButNewline { return c != 10 }
            var hit = test(c)
            if !hit && caseless, let s = Unicode.Scalar(c) {
                let l = String(s).lowercased().unicodeScalars, u = String(s).uppercased().unicodeScalars
                if l.count == 1, l.first!.value != c { hit = test(l.first!.value) }
                if !hit && u.count == 1, u.first!.value != c { hit = test(u.first!.value) }
            }
            return hit != negated
        }

        private func test(_ c: UInt32) -> Bool {
            for r in ranges where r.contains(c) { return true }
            for k in classes where JobPattern.inClass(k.kind, c) != k.negated { return true }
            return false
        }
    }

    static func inClass(_ kind: Character, _ c: UInt32) -> Bool {
        guard let s = Unicode.Scalar(c) else { return false }
        switch kind {
        case "d": return s.properties.numericType == .decimal
        case "w": return s.properties.isAlphabetic || s.properties.numericType == .decimal || c == 95
        default: return s.properties.isWhitespace
        }
    }

    static func isWord(_ c: UInt32?) -> Bool { c.map { inClass("w", $0) } ?? false }

    let program: [Inst]
    public let pattern: String
    /// Largest program accepted (keeps every match cheap).
    public static let maxProgram = 20_000

    public init(_ pattern: String) throws {
        self.pattern = pattern
        var p = Parser(Array(pattern.unicodeScalars.map(\.value)))
        let node = try p.parse()
        var prog: [Inst] = []
        try Self.emit(node, &prog)
        prog.append(.match)
        program = prog
    }

    // MARK: matching

    /// Whether the pattern matches anywhere in `text`; throws if matching
    /// takes longer than `budget` seconds (it cannot, for names of sane
    /// length, but the console guards against it anyway).
    public func matches(_ text: String, budget: TimeInterval = 1) throws -> Bool {
        let input = Array(text.unicodeScalars.map(\.value))
        let deadline = ProcessInfo.processInfo.systemUptime + budget
        var current: [Int] = []
        var next: [Int] = []
        var mark = [Int](repeating: -1, count: program.count)
        var gen = 0
        var stack: [Int] = []
        /// Adds `pc` and everything reachable without consuming a character.
        func add(_ pc: Int, _ list: inout [Int], _ pos: Int) -> Bool {
            stack.append(pc)
            while let x = stack.popLast() {
                if mark[x] == gen { continue }
                mark[x] = gen
                switch program[x] {
                case .jump(let t): stack.append(t)
                case .split(let a, let b): stack.append(b); stack.append(a)
                case .begin: if pos == 0 { stack.append(x + 1) }
                case .end: if pos == input.count { stack.append(x + 1) }
                case .boundary(let want):
                    let before = pos > 0 ? input[pos - 1] : nil
                    let after = pos < input.count ? input[pos] : nil
                    if (Self.isWord(before) != Self.isWord(after)) == want { stack.append(x + 1) }
                case .match:
                    stack.removeAll()
                    return true
                case .char: list.append(x)
                }
            }
            return false
        }
        for pos in 0...input.count {
            gen += 1
            // A new attempt starts at every position (an unanchored search).
            if add(0, &current, pos) { return true }
            if pos == input.count { break }
            if pos & 63 == 63 && ProcessInfo.processInfo.systemUptime > deadline {
                throw JobPatternError(description: "matching took longer than \(budget) s")
            }
            gen += 1
            next.removeAll(keepingCapacity: true)
            let c = input[pos]
            for pc in current {
                if case .char(let set) = program[pc], set.contains(c) {
                    if add(pc + 1, &next, pos + 1) { return true }
                }
            }
            swap(&current, &next)
            // Threads added at pos + 1 carry generation `gen`; the start
            // thread of the next round gets a fresh one but must not repeat them.
            for pc in current { mark[pc] = gen + 1 }
        }
        return false
    }

    // MARK: syntax tree and code

    indirect enum Node {
        case empty
        case set(ClassSet)
        case begin, end
        case boundary(Bool)
        case concat([Node])
        case alt([Node])
        case repeatN(Node, min: Int, max: Int?)
    }

    static func emit(_ n: Node, _ prog: inout [Inst]) throws {
        if prog.count > maxProgram { throw JobPatternError(description: "the pattern is too large") }
        switch n {
        case .empty: break
        case .set(let s): prog.append(.char(s))
        case .begin: prog.append(.begin)
        case .end: prog.append(.end)
        case .boundary(let b): prog.append(.boundary(b))
        case .concat(let ns): for x in ns { try emit(x, &prog) }
        case .alt(let ns):
            var jumps: [Int] = []
            for (i, x) in ns.enumerated() {
                if i < ns.count - 1 {
                    let split = prog.count
                    prog.append(.split(split + 1, 0))
                    try emit(x, &prog)
                    jumps.append(prog.count)
                    prog.append(.jump(0))
                    prog[split] = .split(split + 1, prog.count)
                } else {
                    try emit(x, &prog)
                }
            }
            for j in jumps { prog[j] = .jump(prog.count) }
        case .repeatN(let x, let lo, let hi):
            for _ in 0..<lo { try emit(x, &prog) }
            if let hi {
                // Optional copies: split over each one to the end.
                var splits: [Int] = []
                for _ in lo..<hi {
                    splits.append(prog.count)
                    prog.append(.split(prog.count + 1, 0))
                    try emit(x, &prog)
                }
                for sp in splits { prog[sp] = .split(sp + 1, prog.count) }
            } else {
                let loop = prog.count
                prog.append(.split(loop + 1, 0))
                try emit(x, &prog)
                prog.append(.jump(loop))
                prog[loop] = .split(loop + 1, prog.count)
            }
        }
    }

    struct Parser {
        let s: [UInt32]
        var i = 0
        var caseless = false
        init(_ s: [UInt32]) { self.s = s }

        func fail(_ why: String) -> JobPatternError { JobPatternError(description: why) }
        var atEnd: Bool { i >= s.count }
        func peek(_ k: Int = 0) -> UInt32? { i + k < s.count ? s[i + k] : nil }
        func isChar(_ c: Character, _ k: Int = 0) -> Bool { peek(k) == c.unicodeScalars.first!.value }

        mutating func parse() throws -> Node {
            if isChar("(") && isChar("?", 1) && isChar("i", 2) && isChar(")", 3) {
                caseless = true
                i += 4
            }
            let n = try alternation(depth: 0)
            if !atEnd { throw fail("unbalanced parenthesis at position \(i + 1)") }
            return n
        }

        mutating func alternation(depth: Int) throws -> Node {
            if depth > 100 { throw fail("groups nested too deeply") }
            var alts = [try sequence(depth: depth)]
            while isChar("|") {
                i += 1
                alts.append(try sequence(depth: depth))
            }
            return alts.count == 1 ? alts[0] : .alt(alts)
        }

        mutating func sequence(depth: Int) throws -> Node {
            var items: [Node] = []
            while !atEnd && !isChar("|") && !isChar(")") {
                var atom = try self.atom(depth: depth)
                let at = i
                if let q = try quantifier() {
                    switch atom {
                    case .begin, .end, .boundary: throw fail("nothing to repeat at position \(at + 1)")
                    default: break
                    }
                    atom = .repeatN(atom, min: q.0, max: q.1)
                    if try quantifierAhead() { throw fail("multiple repeat at position \(i + 1)") }
                }
                items.append(atom)
            }
            return items.count == 1 ? items[0] : .concat(items)
        }

        /// Whether a quantifier starts here (without consuming it).
        mutating func quantifierAhead() throws -> Bool {
            let save = i
            defer { i = save }
            return try quantifier() != nil
        }

        mutating func quantifier() throws -> (Int, Int?)? {
            guard let c = peek() else { return nil }
            var q: (Int, Int?)
            switch Character(Unicode.Scalar(c)!) {
            case "*": q = (0, nil); i += 1
            case "+": q = (1, nil); i += 1
            case "?": q = (0, 1); i += 1
            case "{":
                // {m}, {m,}, {m,n}; anything else is a literal brace (as in Python).
                var j = i + 1
                func number() -> Int? {
                    var v = 0, any = false
                    while j < s.count, s[j] >= 48, s[j] <= 57 {
                        v = min(v * 10 + Int(s[j] - 48), 1_000_000); any = true; j += 1
                    }
                    return any ? v : nil
                }
                let first = number()
                let lo = first ?? 0
                var hi: Int? = first
                if j < s.count && s[j] == 44 {
                    j += 1
                    hi = number()
                } else if first == nil {
                    return nil
                }
                guard j < s.count && s[j] == 125 else { return nil }
                if let h = hi, h < lo { throw fail("bad repetition {\(lo),\(h)}") }
                if lo > 1000 || (hi ?? 0) > 1000 { throw fail("repetition counts above 1000 are not supported") }
                i = j + 1
                q = (lo, hi)
            default:
                return nil
            }
            if isChar("?") { i += 1 }          // lazy: same result for a search
            else if isChar("+") { throw fail("possessive quantifiers are not supported") }
            return q
        }

        mutating func atom(depth: Int) throws -> Node {
            let c = s[i]
            i += 1
            switch Character(Unicode.Scalar(c)!) {
            case "(":
                if isChar("?") {
                    if isChar(":", 1) {
                        i += 2
                    } else if isChar("P", 1) && isChar("<", 2) || isChar("<", 1) && !isChar("=", 2) && !isChar("!", 2) {
                        // A named group: the name does not matter here.
                        while !atEnd && !isChar(">") { i += 1 }
                        if atEnd { throw fail("unterminated group name") }
                        i += 1
                    } else {
                        throw fail("lookaround, backreferences and inline flags inside the pattern are not supported")
                    }
                }
                let inner = try alternation(depth: depth + 1)
                guard isChar(")") else { throw fail("missing ), unterminated subpattern") }
                i += 1
                // A group may be repeated even if it holds only an anchor.
                return .concat([inner])
            case ")": throw fail("unbalanced parenthesis")
            case "*", "+", "?": throw fail("nothing to repeat at position \(i)")
            case "{":
                i -= 1
                if try quantifierAhead() { throw fail("nothing to repeat at position \(i + 1)") }
                i += 1
                return .set(.single(c, caseless: caseless))
            case "^": return .begin
            case "$": return .end
            case ".":
                var set = ClassSet()
                set.anyButNewline = true
                return .set(set)
            case "[": return .set(try bracket())
            case "\\": return try escape(inClass: false).node
            default: return .set(.single(c, caseless: caseless))
            }
        }

        /// An escape after the backslash: a node, or for classes a set.
        mutating func escape(inClass: Bool) throws -> (node: Node, set: ClassSet?) {
            guard let c = peek() else { throw fail("bad escape (end of pattern)") }
            i += 1
            let ch = Character(Unicode.Scalar(c)!)
            switch ch {
            case "d", "w", "s", "D", "W", "S":
                var set = ClassSet()
                set.classes = [(Character(ch.lowercased()), ch.isUppercase)]
                return (.set(set), set)
            case "A" where !inClass: return (.begin, nil)
            case "Z" where !inClass, "z" where !inClass: return (.end, nil)
            case "b" where !inClass: return (.boundary(true), nil)
            case "B" where !inClass: return (.boundary(false), nil)
            case "n": return (.set(.single(10, caseless: false)), .single(10, caseless: false))
            case "t": return (.set(.single(9, caseless: false)), .single(9, caseless: false))
            case "1"..."9": throw fail("backreferences are not supported")
            default:
                if ch.isLetter || ch.isNumber { throw fail("bad escape \\\(ch)") }
                let set = ClassSet.single(c, caseless: caseless)
                return (.set(set), set)
            }
        }

        mutating func bracket() throws -> ClassSet {
            var set = ClassSet()
            set.caseless = caseless
            if isChar("^") { set.negated = true; i += 1 }
            var first = true
            while true {
                guard let c = peek() else { throw fail("unterminated character set") }
                if c == 93 && !first { i += 1; break }   // ]
                first = false
                var lo: UInt32
                if c == 92 {                             // backslash
                    i += 1
                    let e = try escape(inClass: true)
                    guard let es = e.set else { throw fail("bad escape in character set") }
                    if !es.classes.isEmpty { set.classes += es.classes; continue }
                    lo = es.ranges[0].lowerBound
                } else {
                    lo = c
                    i += 1
                }
                if isChar("-") && peek(1) != nil && peek(1) != 93 {
                    i += 1
                    var hi = s[i]
                    i += 1
                    if hi == 92 {
                        let e = try escape(inClass: true)
                        guard let es = e.set, es.classes.isEmpty else { throw fail("bad character range") }
                        hi = es.ranges[0].lowerBound
                    }
                    guard lo <= hi else { throw fail("bad character range") }
                    set.ranges.append(lo...hi)
                } else {
                    set.ranges.append(lo...lo)
                }
            }
            return set
        }
    }
}
