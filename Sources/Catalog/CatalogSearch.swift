import LeadwireAPI
import Store

/// Search by SKU (exact) or by name: every word of the query found in the name (as a word, a
/// prefix or a part of one, in any script), ranked; when no item has them all, each word with a
/// typo is corrected against the names' vocabulary and the search runs again. The index does the
/// finding (FTS5 trigrams on SQLite, pg_trgm on PostgreSQL); ranking is here, on a few hundred
/// candidates at most.
public enum CatalogSearch {
    /// Candidates read from the index per query, before ranking.
    static let candidates = 400

    public static func search(_ db: Connection, query: String, supplier: String, limit: Int) throws -> Catalog_SearchItemsResponse {
        var response = Catalog_SearchItemsResponse()
        let text = query.trimmingSpaces
        var seen = Set<String>()
        for item in try bySKU(db, text, supplier: supplier, limit: limit) {
            seen.insert(item.id)
            response.hits.append(hit(item, "sku", 1000))
        }
        let words = CatalogText.words(CatalogText.normalise(text))
        guard !words.isEmpty, response.hits.count < limit else { return response }
        var ranked = try byName(db, words, supplier: supplier)
        var match = "name"
        if ranked.isEmpty {
            let corrected = try correct(db, words)
            if corrected != words {
                ranked = try byName(db, corrected, supplier: supplier)
                match = "similar"
            }
            if let best = ranked.first { response.suggestion = best.item.name }
        }
        for r in ranked where response.hits.count < limit && seen.insert(r.item.id).inserted {
            response.hits.append(hit(r.item, match, r.score))
        }
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
    static func byName(_ db: Connection, _ words: [String], supplier: String) throws -> [(item: Catalog_Item, score: Double)] {
        let long = words.filter { $0.unicodeScalars.count >= 3 }
        let rows: [(Catalog_Item, String)]
        let columns = CatalogStore.itemColumnsOfI
        if !long.isEmpty && !db.isPostgres {
            // Each word as an FTS5 string: a substring match under the trigram tokenizer.
            let match = long.map { "\"\($0)\"" }.joined(separator: " AND ")
            rows = try db.query(
                literal: """
                    SELECT \(raw: columns), i.search_name FROM catalog_items_fts f JOIN catalog_items i ON i.id = f.rowid
                    WHERE catalog_items_fts MATCH \(match) AND (\(supplier) = '' OR i.supplier = \(supplier))
                    ORDER BY f.rank LIMIT \(candidates)
                    """
            ) { (CatalogStore.item($0), $0.string(11)) }
        } else {
            // PostgreSQL's trigram index serves LIKE '%word%'; on SQLite words under three
            // characters have no trigrams and are found by a scan (bounded by the limit).
            var sql = SQLLiteral.StringInterpolation(literalCapacity: 200, interpolationCount: words.count + 2)
            sql.appendLiteral("SELECT ")
            sql.appendInterpolation(raw: columns)
            sql.appendLiteral(", i.search_name FROM catalog_items i WHERE (")
            sql.appendInterpolation(supplier)
            sql.appendLiteral(" = '' OR i.supplier = ")
            sql.appendInterpolation(supplier)
            sql.appendLiteral(")")
            for w in (long.isEmpty ? words : long) {
                sql.appendLiteral(" AND i.search_name LIKE ")
                sql.appendInterpolation("%" + w + "%")
            }
            sql.appendLiteral(" ORDER BY length(i.search_name), i.id LIMIT \(candidates)")
            rows = try db.query(literal: SQLLiteral(stringInterpolation: sql)) { (CatalogStore.item($0), $0.string(11)) }
        }
        var out = [(item: Catalog_Item, score: Double)]()
        for (item, name) in rows {
            let nameWords = CatalogText.words(name)
            var score = 0.0
            var all = true
            for w in words {
                if nameWords.contains(w) {
                    score += 3
                } else if nameWords.contains(where: { $0.hasPrefix(w) }) {
                    score += 2
                } else if name.contains(w) {
                    score += 1
                } else {
                    all = false
                }
            }
            guard all else { continue }
            score -= Double(nameWords.count) * 0.01
            out.append((item, score))
        }
        out.sort { $0.score != $1.score ? $0.score > $1.score : $0.item.name < $1.item.name }
        return out
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
            for candidate in try vocabulary(db, near: w) {
                var d = CatalogText.distance(w, candidate, limit: allowance)
                let n = w.unicodeScalars.count
                if candidate.unicodeScalars.count > n {
                    var prefix = String.UnicodeScalarView()
                    prefix.append(contentsOf: candidate.unicodeScalars.prefix(n))
                    d = min(d, CatalogText.distance(w, String(prefix), limit: allowance))
                }
                if d <= allowance && (best == nil || d < best!.distance) { best = (candidate, d) }
            }
            out.append(best?.word ?? w)
        }
        return out
    }

    static func known(_ db: Connection, _ word: String) throws -> Bool {
        try db.first(literal: "SELECT 1 FROM catalog_words WHERE word = \(word)") { _ in true } ?? false
    }

    /// Vocabulary words sharing trigrams with `word`, most shared first.
    static func vocabulary(_ db: Connection, near word: String) throws -> [String] {
        if db.isPostgres {
            return try db.query(
                literal: """
                    SELECT word FROM catalog_words WHERE word % \(word) OR word LIKE \(String(word.prefix(3)) + "%")
                    ORDER BY similarity(word, \(word)) DESC LIMIT 60
                    """
            ) { $0.string(0) }
        }
        let grams = CatalogText.trigrams(word)
        guard !grams.isEmpty else { return [] }
        let match = grams.sorted().map { "\"\($0)\"" }.joined(separator: " OR ")
        return try db.query(literal: "SELECT word FROM catalog_words_fts WHERE catalog_words_fts MATCH \(match) ORDER BY rank LIMIT 60") {
            $0.string(0)
        }
    }
}
