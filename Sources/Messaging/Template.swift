import LeadwireAPI

/// A message text with `{placeholder}`s, checked once when it is stored: every placeholder must be
/// one the message kind offers, and braces must pair (`{{` and `}}` write a literal brace).
/// Rendering a checked template cannot fail.
public struct Template: Sendable, Equatable {
    enum Piece: Sendable, Equatable {
        case text(String)
        case placeholder(String)
    }

    let pieces: [Piece]

    /// What is wrong with a template text, and where (line and column count from 1, in characters).
    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public let line: Int
        public let column: Int
        public let message: String

        public var description: String { "line \(line), column \(column): \(message)" }
    }

    /// Parses `text`, allowing only the placeholders in `allowed`.
    public init(_ text: String, allowed: Set<String>) throws(Problem) {
        var pieces = [Piece]()
        var literal = ""
        let chars = Array(text)
        // Where each character is, for the messages: line and column from 1.
        var positions = [(line: Int, column: Int)]()
        positions.reserveCapacity(chars.count)
        var line = 1
        var column = 1
        for c in chars {
            positions.append((line, column))
            if c == "\n" || c == "\r\n" {
                line += 1
                column = 1
            } else {
                column += 1
            }
        }
        var i = 0
        while i < chars.count {
            let c = chars[i]
            let at = positions[i]
            let following: Character? = i + 1 < chars.count ? chars[i + 1] : nil
            switch c {
            case "{" where following == "{":
                literal.append("{")
                i += 2
            case "}" where following == "}":
                literal.append("}")
                i += 2
            case "}":
                throw Problem(line: at.line, column: at.column, message: "\"}\" without an opening \"{\" (write \"}}\" for a brace itself)")
            case "{":
                var j = i + 1
                var name = ""
                while j < chars.count, chars[j] != "}", chars[j] != "{", chars[j] != "\n", chars[j] != "\r\n" {
                    name.append(chars[j])
                    j += 1
                }
                guard j < chars.count, chars[j] == "}" else {
                    throw Problem(
                        line: at.line, column: at.column, message: "\"{\" is not closed by \"}\" (write \"{{\" for a brace itself)")
                }
                let key = name.trimmingSpaces
                guard !key.isEmpty else { throw Problem(line: at.line, column: at.column, message: "empty placeholder \"{}\"") }
                guard allowed.contains(key) else {
                    throw Problem(
                        line: at.line, column: at.column,
                        message: "unknown placeholder {\(key)}; this message offers "
                            + allowed.sorted().map { "{\($0)}" }.joined(separator: ", "))
                }
                if !literal.isEmpty {
                    pieces.append(.text(literal))
                    literal = ""
                }
                pieces.append(.placeholder(key))
                i = j + 1
            default:
                literal.append(c)
                i += 1
            }
        }
        if !literal.isEmpty { pieces.append(.text(literal)) }
        self.pieces = pieces
    }

    /// The text with each placeholder replaced by its value (empty when none is given).
    public func render(_ values: [String: String]) -> String {
        var out = ""
        for p in pieces {
            switch p {
            case .text(let t): out += t
            case .placeholder(let k): out += values[k] ?? ""
            }
        }
        return out
    }

    /// The placeholders used, in order of first use.
    public var placeholders: [String] {
        var seen = [String]()
        for case .placeholder(let k) in pieces where !seen.contains(k) { seen.append(k) }
        return seen
    }
}
