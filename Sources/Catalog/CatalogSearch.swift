import LeadwireAPI
import Store

/// Search by SKU (exact) or by name: every word of the query found in the name (as a word, a
/// prefix or a part of one, in any script), ranked; when no item has them all, each word with a
/// typo is corrected against the names' vocabulary and the search runs again. The index does the
/// finding (FTS5 trigrams on SQLite, pg_trgm on PostgreSQL); ranking is here, on a few hundred
/// candidates at most.
public enum CatalogSearch {
    /// Names read from the index per query, before ranking: enough that a query matching thousands
    /// of items still ranks whole words above parts of words among many, few enough to stay within
    /// a few milliseconds (FTS5's own bm25 ordering over 5,000 matches took 20 ms).
    static let candidates = 1000

    public static func search(_ db: Connection, query: String, supplier: String, limit: Int) throws -> Catalog_SearchItemsResponse {
        var response = Catalog_SearchItemsResponse()
        let text = query.trimmingSpaces
        // A SKU is exact: when the query is one, its items are the answer.
        let bySKU = try bySKU(db, text, supplier: supplier, limit: limit)
        if !bySKU.isEmpty {
            response.hits = bySKU.map { hit($0, "sku", 1000) }
            return response
        }
        let words = CatalogText.words(CatalogText.normalise(text))
        guard !words.isEmpty else { return response }
        var ranked = try byName(db, words, supplier: supplier, limit: limit)
        var match = "name"
        if ranked.isEmpty {
            let corrected = try correct(db, words)
            if corrected != words {
                ranked = try byName(db, corrected, supplier: supplier, limit: limit)
                match = "similar"
            }
            if let best = ranked.first { response.suggestion = best.item.name }
        }
        response.hits = ranked.map { hit($0.item, match, $0.score) }
        return response
    }

    static func hit(_ item: Catalog_Item, _ match: String, _ score: Double) -> Catalog_SearchHit {
        var h = Catalog_SearchHit()
        h.item = item
        h.match = match
        h.score = score
        return h
    }

    static func bySKU(_ db: Connection, _ text: String, supplier: String, limit: Int) throws -> [Catalog_Item] {
        guard !text.isEmpty, text.count <= 100 else { return [] }
        let upper = text.uppercased()
        return try db.query(
            literal: """
                SELECT \(raw: CatalogStore.itemColumns) FROM catalog_items WHERE sku IN (\(text), \(upper))
                AND (\(supplier) = '' OR supplier = \(supplier)) ORDER BY id LIMIT \(limit)
                """, map: CatalogStore.item)
    }

    /// Items whose name holds every word, best first: whole words over prefixes over parts of
    /// words, then shorter names (fewer other words to read past).
    static func byName(_ db: Connection, _ words: [String], supplier: String, limit: Int) throws -> [(item: Catalog_Item, score: Double)] {
        let long = words.filter { $0.unicodeScalars.count >= 3 }
        let names: [(id: Int64, name: String)]
        if !long.isEmpty && !db.isPostgres {
            // Each word as an FTS5 string, a substring match under the trigram tokenizer; a long
            // word by its first six letters only (half the posting lists to intersect, about as
            // selective) — the whole word is checked by `score`.
            let match = long.map { w -> String in
                var head = String.UnicodeScalarView()
                head.append(contentsOf: w.unicodeScalars.prefix(6))
                return "\"\(String(head))\""
            }.joined(separator: " AND ")
            names = try db.query(
                literal: """
                    SELECT i.id, i.search_name FROM catalog_items_fts f JOIN catalog_items i ON i.id = f.rowid
                    WHERE catalog_items_fts MATCH \(match) AND (\(supplier) = '' OR i.supplier = \(supplier)) LIMIT \(candidates)
                    """
            ) { (id: $0.int(0), name: $0.string(1)) }
        } else {
            // PostgreSQL's trigram index serves LIKE '%word%'; on SQLite words under three
            // characters have no trigrams and are found by a scan (bounded by the limit).
            var sql = SQLLiteral.StringInterpolation(literalCapacity: 200, interpolationCount: words.count + 3)
            sql.appendLiteral("SELECT id, search_name FROM catalog_items WHERE (")
            sql.appendInterpolation(supplier)
            sql.appendLiteral(" = '' OR supplier = ")
            sql.appendInterpolation(supplier)
            sql.appendLiteral(")")
            for w in (long.isEmpty ? words : long) {
                sql.appendLiteral(" AND search_name LIKE ")
                sql.appendInterpolation("%" + w + "%")
            }
            sql.appendLiteral(" LIMIT ")
            sql.appendInterpolation(candidates)
            names = try db.query(literal: SQLLiteral(stringInterpolation: sql)) { (id: $0.int(0), name: $0.string(1)) }
        }
        let needles = words.map { Array($0.utf8) }
        var scored = [(id: Int64, name: String, score: Double)]()
        for (id, name) in names {
            if let score = score(name, needles) { scored.append((id, name, score)) }
        }
        // Ties in the order the items were listed (ids): comparing Cyrillic names as Strings was a
        // fifth of a search's CPU.
        scored.sort { $0.score != $1.score ? $0.score > $1.score : $0.id < $1.id }
        let top = scored.prefix(limit)
        guard !top.isEmpty else { return [] }
        // The full rows of the few that are shown.
        var sql = SQLLiteral.StringInterpolation(literalCapacity: 120, interpolationCount: top.count)
        sql.appendLiteral("SELECT ")
        sql.appendInterpolation(raw: CatalogStore.itemColumns)
        sql.appendLiteral(" FROM catalog_items WHERE id IN (")
        for (i, t) in top.enumerated() {
            if i > 0 { sql.appendLiteral(", ") }
            sql.appendInterpolation(t.id)
        }
        sql.appendLiteral(")")
        let items = Dictionary(
            try db.query(literal: SQLLiteral(stringInterpolation: sql), map: CatalogStore.item).map { ($0.id, $0) },
            uniquingKeysWith: { a, _ in a })
        return top.compactMap { t in items["item-\(t.id)"].map { (item: $0, score: t.score) } }
    }

    /// How well a normalised name (lower-case words, one space apart) holds every word: 3 for a
    /// whole word, 2 for the start of one, 1 for a part of one; nil when a word is missing. On the
    /// UTF-8 bytes: it runs for every candidate of every search.
    static func score(_ name: String, _ words: [[UInt8]]) -> Double? {
        var name = name
        return name.withUTF8 { n -> Double? in
            var total = 0
            for w in words {
                guard let first = w.first, w.count <= n.count else { return nil }
                var best = 0
                var i = 0
                while i + w.count <= n.count && best < 3 {
                    if n[i] == first {
                        var j = 1
                        while j < w.count && n[i + j] == w[j] { j += 1 }
                        if j == w.count {
                            let starts = i == 0 || n[i - 1] == 0x20
                            let ends = i + w.count == n.count || n[i + w.count] == 0x20
                            best = max(best, starts ? (ends ? 3 : 2) : 1)
                        }
                    }
                    i += 1
                }
                if best == 0 { return nil }
                total += best
            }
            var spaces = 0
            for b in n where b == 0x20 { spaces += 1 }
            return Double(total) - Double(spaces + 1) * 0.01
        }
    }

    /// Each word that no item name contains, replaced by the closest word of the vocabulary within
    /// its typo allowance (compared whole, and as a prefix of a longer word).
    static func correct(_ db: Connection, _ words: [String]) throws -> [String] {
        var out = [String]()
        for w in words {
            let allowance = CatalogText.typoAllowance(w)
            guard allowance > 0, try !known(db, w) else {
                out.append(w)
                continue
            }
            var best: (word: String, distance: Int)? = nil
            let n = w.unicodeScalars.count
            for candidate in try vocabulary(db, near: w) {
                var d = CatalogText.distance(w, candidate, limit: allowance)
                if candidate.unicodeScalars.count > n {
                    var prefix = String.UnicodeScalarView()
                    prefix.append(contentsOf: candidate.unicodeScalars.prefix(n))
                    d = min(d, CatalogText.distance(w, String(prefix), limit: allowance))
                }
                if d <= allowance && (best == nil || d < best!.distance || (d == best!.distance && candidate < best!.word)) {
                    best = (candidate, d)
                }
            }
            out.append(best?.word ?? w)
        }
        return out
    }

    static func known(_ db: Connection, _ word: String) throws -> Bool {
        try db.first(literal: "SELECT 1 FROM catalog_words WHERE word = \(word)") { _ in true } ?? false
    }

    /// Vocabulary words that may be `word` with a typo: those sharing a trigram with it, and those
    /// starting with its first two letters (a short word with its middle letters swapped shares no
    /// trigram: "дрлеь").
    static func vocabulary(_ db: Connection, near word: String) throws -> [String] {
        var found = [String]()
        let scalars = Array(word.unicodeScalars)
        if scalars.count >= 2, let last = Unicode.Scalar(scalars[1].value + 1) {
            var lower = String.UnicodeScalarView()
            lower.append(contentsOf: scalars.prefix(2))
            var upper = String.UnicodeScalarView()
            upper.append(scalars[0])
            upper.append(last)
            found += try db.query(
                literal: "SELECT word FROM catalog_words WHERE word >= \(String(lower)) AND word < \(String(upper)) ORDER BY word LIMIT 500"
            ) { $0.string(0) }
        }
        if db.isPostgres {
            found += try db.query(
                literal: "SELECT word FROM catalog_words WHERE word % \(word) ORDER BY similarity(word, \(word)) DESC LIMIT 200"
            ) {
                $0.string(0)
            }
            return found
        }
        let grams = CatalogText.trigrams(word)
        guard !grams.isEmpty else { return found }
        let match = grams.sorted().map { "\"\($0)\"" }.joined(separator: " OR ")
        found += try db.query(literal: "SELECT word FROM catalog_words_fts WHERE catalog_words_fts MATCH \(match) LIMIT \(candidates)") {
            $0.string(0)
        }
        return found
    }
}
