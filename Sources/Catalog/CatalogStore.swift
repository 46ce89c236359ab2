import LeadwireAPI
import Store
import Wire

/// The catalogue's tables, in the database of the service that serves it (intake's): items and
/// their price history, suppliers' column mappings, imports, the vocabulary of item names, and the
/// stock that accepted leads hold. Every function takes the caller's connection, so a lead's
/// acceptance and its reservation are one transaction.
public enum CatalogStore {
    /// Tables both engines share; search indexes follow per engine.
    static let tables = """
        CREATE TABLE catalog_suppliers (name TEXT PRIMARY KEY, mapping BLOB NOT NULL, updated_at INTEGER NOT NULL);
        CREATE TABLE catalog_items (
            id INTEGER PRIMARY KEY,
            supplier TEXT NOT NULL,
            sku TEXT NOT NULL,
            name TEXT NOT NULL,
            search_name TEXT NOT NULL,
            unit TEXT NOT NULL,
            price_cents INTEGER NOT NULL,
            currency TEXT NOT NULL,
            stock_milli INTEGER NOT NULL,
            reserved_milli INTEGER NOT NULL DEFAULT 0,
            keyed_by_name INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            UNIQUE (supplier, sku)
        );
        CREATE INDEX catalog_items_by_sku ON catalog_items(sku);
        CREATE TABLE catalog_prices (
            id INTEGER PRIMARY KEY,
            item_id INTEGER NOT NULL REFERENCES catalog_items(id),
            price_cents INTEGER NOT NULL,
            currency TEXT NOT NULL,
            stock_milli INTEGER NOT NULL,
            import_id INTEGER,
            at INTEGER NOT NULL
        );
        CREATE INDEX catalog_prices_by_item ON catalog_prices(item_id, id);
        CREATE TABLE catalog_imports (
            id INTEGER PRIMARY KEY,
            supplier TEXT NOT NULL,
            file_name TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            rows_read INTEGER NOT NULL DEFAULT 0,
            created INTEGER NOT NULL DEFAULT 0,
            updated INTEGER NOT NULL DEFAULT 0,
            unchanged INTEGER NOT NULL DEFAULT 0,
            rejected INTEGER NOT NULL DEFAULT 0,
            actor TEXT NOT NULL,
            at INTEGER NOT NULL
        );
        -- Every word of every item name: typos in a query are corrected against it.
        CREATE TABLE catalog_words (word TEXT PRIMARY KEY);
        -- What accepted leads hold, per order line; released or consumed with the lead's next step.
        CREATE TABLE catalog_reservations (
            lead_id INTEGER NOT NULL,
            line INTEGER NOT NULL,
            item_id INTEGER NOT NULL REFERENCES catalog_items(id),
            quantity_milli INTEGER NOT NULL,
            at INTEGER NOT NULL,
            PRIMARY KEY (lead_id, line)
        );
        CREATE INDEX catalog_reservations_by_item ON catalog_reservations(item_id);
        """

    /// SQLite: FTS5 with the trigram tokenizer (substrings of three or more characters, any
    /// script) over the item table's own column (external content). Kept in step by `apply`, not
    /// by triggers: a trigger's statement savepoint makes FTS5 flush its pending terms at every row,
    /// which made a 100,000-row import six times slower (measured: 10 s against 1.7 s).
    public static let sqliteSchema =
        tables + """

            CREATE VIRTUAL TABLE catalog_items_fts USING fts5(search_name, content='catalog_items', content_rowid='id', tokenize='trigram');
            CREATE VIRTUAL TABLE catalog_words_fts USING fts5(word, content='catalog_words', tokenize='trigram');
            """

    /// PostgreSQL: pg_trgm's GIN indexes serve the same LIKE '%word%' and similarity look-ups. The
    /// extension is installed once per database, in `public` (on every service's search path), under
    /// a database-wide lock: schemas of one database may migrate at the same moment.
    public static let postgresSchema =
        tables + """

            SELECT pg_advisory_xact_lock(7236601);
            CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
            CREATE INDEX catalog_items_trgm ON catalog_items USING gin (search_name gin_trgm_ops);
            CREATE INDEX catalog_words_trgm ON catalog_words USING gin (word gin_trgm_ops);
            """

    static let columnNames: [StaticString] = [
        "id", "supplier", "sku", "name", "unit", "price_cents", "currency", "stock_milli", "reserved_milli", "keyed_by_name", "updated_at",
    ]
    /// The columns `item(_:)` reads, in its order.
    static let itemColumns = SQLFragment(columns: columnNames)
    static let itemColumnsOfI = SQLFragment(columns: columnNames, prefix: "i.")

    static func item(_ r: Row) -> Catalog_Item {
        var i = Catalog_Item()
        i.id = "item-\(r.int(0))"
        i.supplier = r.string(1)
        i.sku = r.string(2)
        i.name = r.string(3)
        i.unit = r.string(4)
        i.price = FixedPoint.format(r.int(5), places: 2)
        i.currency = r.string(6)
        i.stock = Quantity.format(r.int(7))
        i.reserved = Quantity.format(r.int(8))
        i.available = Quantity.format(r.int(7) - r.int(8))
        i.keyedByName = r.bool(9)
        i.updatedAtMs = r.int(10)
        return i
    }

    public static func itemNumber(_ id: String) -> Int64? {
        guard id.hasPrefix("item-"), let n = Int64(id.dropFirst(5)), n > 0 else { return nil }
        return n
    }

    // MARK: Mappings

    public static func mapping(_ db: Connection, supplier: String) throws -> Catalog_ColumnMapping? {
        try db.first(literal: "SELECT mapping FROM catalog_suppliers WHERE name = \(supplier)") {
            try ProtoCodec.decode(Catalog_ColumnMapping.self, from: $0.blob(0))
        }
    }

    public static func putMapping(_ db: Connection, supplier: String, _ m: Catalog_ColumnMapping, now: Int64) throws {
        let body = ProtoCodec.encode(m)
        try db.run(
            literal: """
                INSERT INTO catalog_suppliers(name, mapping, updated_at) VALUES (\(supplier), \(body), \(now))
                ON CONFLICT(name) DO UPDATE SET mapping = excluded.mapping, updated_at = excluded.updated_at
                """)
    }

    // MARK: Import

    /// Rows per write transaction: a 100,000-row price list is written in 100 transactions, so the
    /// leads being registered meanwhile wait for one batch (milliseconds), not the whole file.
    public static let importBatch = 1000

    /// What an import has done so far, carried from batch to batch.
    public struct ImportProgress: Sendable {
        public var report: Catalog_ImportReport
        public var importID: Int64
        /// Words this import already offered to the vocabulary.
        var words = Set<String>()
    }

    /// Records the import and the mapping it uses; rows follow with `apply(_:rows:progress:now:)`.
    public static func begin(
        _ db: Connection, supplier: String, list: PriceListImport, fileName: String, sha256: String, mapping: Catalog_ColumnMapping,
        actor: String, now: Int64
    ) throws -> ImportProgress {
        try putMapping(db, supplier: supplier, mapping, now: now)
        let importID = try db.insertReturningID(
            literal: """
                INSERT INTO catalog_imports(supplier, file_name, sha256, actor, at)
                VALUES (\(supplier), \(fileName), \(sha256), \(actor), \(now))
                """)
        var report = Catalog_ImportReport()
        report.importId = "import-\(importID)"
        report.supplier = supplier
        report.rows = Int32(list.rows.count + list.rejected.count)
        report.rejectedRows = list.rejected
        report.rejected = Int32(list.rejected.count)
        report.mapping = mapping
        report.sha256 = sha256
        return ImportProgress(report: report, importID: importID)
    }

    /// Applies rows of a read price list: new items created, changed ones updated (with a
    /// price-history point when price, currency or stock moved), the same ones left alone — so
    /// importing a file twice changes nothing the second time.
    public static func apply(_ db: Connection, rows: ArraySlice<PriceListRow>, progress: inout ImportProgress, now: Int64) throws {
        let supplier = progress.report.supplier
        let importID = progress.importID
        for row in rows {
            let search = searchText(row)
            if row.keyedByName { progress.report.keyedByName += 1 }
            let existing = try db.first(
                literal: """
                    SELECT id, name, unit, price_cents, currency, stock_milli, search_name FROM catalog_items
                    WHERE supplier = \(supplier) AND sku = \(row.sku)
                    """
            ) { r in
                (
                    id: r.int(0), name: r.string(1), unit: r.string(2), price: r.int(3), currency: r.string(4), stock: r.int(5),
                    search: r.string(6)
                )
            }
            guard let old = existing else {
                let stock = row.stockMilli ?? 0
                let id = try db.insertReturningID(
                    literal: """
                        INSERT INTO catalog_items(supplier, sku, name, search_name, unit, price_cents, currency, stock_milli, keyed_by_name, updated_at)
                        VALUES (\(supplier), \(row.sku), \(row.name), \(search), \(row.unit), \(row.priceCents), \(row.currency), \(stock), \(row.keyedByName), \(now))
                        """)
                try db.run(
                    literal: """
                        INSERT INTO catalog_prices(item_id, price_cents, currency, stock_milli, import_id, at)
                        VALUES (\(id), \(row.priceCents), \(row.currency), \(stock), \(importID), \(now))
                        """)
                progress.report.created += 1
                try index(db, id: id, old: nil, new: search)
                try learnWords(db, search, &progress.words)
                continue
            }
            let stock = row.stockMilli ?? old.stock
            let priceMoved = old.price != row.priceCents || old.currency != row.currency || old.stock != stock
            if !priceMoved && old.name == row.name && old.unit == row.unit {
                progress.report.unchanged += 1
                continue
            }
            try db.run(
                literal: """
                    UPDATE catalog_items SET name = \(row.name), search_name = \(search), unit = \(row.unit), price_cents = \(row.priceCents),
                    currency = \(row.currency), stock_milli = \(stock), updated_at = \(now) WHERE id = \(old.id)
                    """)
            if priceMoved {
                try db.run(
                    literal: """
                        INSERT INTO catalog_prices(item_id, price_cents, currency, stock_milli, import_id, at)
                        VALUES (\(old.id), \(row.priceCents), \(row.currency), \(stock), \(importID), \(now))
                        """)
            }
            if old.name != row.name {
                try index(db, id: old.id, old: old.search, new: search)
                try learnWords(db, search, &progress.words)
            }
            progress.report.updated += 1
        }
    }

    /// The import's counts, kept with its record.
    public static func finish(_ db: Connection, _ progress: ImportProgress) throws {
        let r = progress.report
        try db.run(
            literal: """
                UPDATE catalog_imports SET rows_read = \(r.rows), created = \(r.created), updated = \(r.updated),
                unchanged = \(r.unchanged), rejected = \(r.rejected) WHERE id = \(progress.importID)
                """)
    }

    /// A whole price list in one transaction (tests, small lists).
    public static func apply(
        _ db: Connection, supplier: String, list: PriceListImport, fileName: String, sha256: String, mapping: Catalog_ColumnMapping,
        actor: String, now: Int64
    ) throws -> Catalog_ImportReport {
        var progress = try begin(
            db, supplier: supplier, list: list, fileName: fileName, sha256: sha256, mapping: mapping, actor: actor, now: now)
        try apply(db, rows: list.rows[...], progress: &progress, now: now)
        try finish(db, progress)
        return progress.report
    }

    /// What search looks in: the normalised name, and the SKU when the name does not hold it (so a
    /// part of a SKU is found like a part of a name: "GBH2" finds "GBH2-26 SDS").
    static func searchText(_ row: PriceListRow) -> String {
        let name = CatalogText.normalise(row.name)
        guard !row.keyedByName else { return name }
        let sku = CatalogText.normalise(row.sku)
        return sku.isEmpty || (" " + name + " ").contains(" " + sku + " ") ? name : name + " " + sku
    }

    /// The item's name in the SQLite search index (PostgreSQL's GIN index follows the column itself).
    static func index(_ db: Connection, id: Int64, old: String?, new: String) throws {
        guard !db.isPostgres else { return }
        if let old {
            try db.run(literal: "INSERT INTO catalog_items_fts(catalog_items_fts, rowid, search_name) VALUES ('delete', \(id), \(old))")
        }
        try db.run(literal: "INSERT INTO catalog_items_fts(rowid, search_name) VALUES (\(id), \(new))")
    }

    /// Adds the name's words to the vocabulary typos are corrected against (`seen`: words this
    /// import has already offered).
    static func learnWords(_ db: Connection, _ search: String, _ seen: inout Set<String>) throws {
        for w in CatalogText.words(search) where seen.insert(w).inserted {
            guard try db.run(literal: "INSERT OR IGNORE INTO catalog_words(word) VALUES (\(w))") == 1, !db.isPostgres else { continue }
            let rowid = try db.lastInsertRowID()
            try db.run(literal: "INSERT INTO catalog_words_fts(rowid, word) VALUES (\(rowid), \(w))")
        }
    }

    // MARK: Items

    public static func item(_ db: Connection, id: Int64) throws -> Catalog_Item? {
        try db.first(literal: "SELECT \(raw: itemColumns) FROM catalog_items WHERE id = \(id)", map: item)
    }

    public static func details(_ db: Connection, id: Int64) throws -> Catalog_ItemDetails? {
        guard let i = try item(db, id: id) else { return nil }
        var d = Catalog_ItemDetails()
        d.item = i
        d.history = try db.query(
            literal: """
                SELECT price_cents, currency, stock_milli, at, import_id FROM catalog_prices WHERE item_id = \(id)
                ORDER BY id DESC LIMIT 100
                """
        ) { r in
            var p = Catalog_PricePoint()
            p.price = FixedPoint.format(r.int(0), places: 2)
            p.currency = r.string(1)
            p.stock = Quantity.format(r.int(2))
            p.atMs = r.int(3)
            p.importId = r.isNull(4) ? "" : "import-\(r.int(4))"
            return p
        }
        return d
    }
}

/// Quantities (stock, order lines) are held in thousandths.
public enum Quantity {
    /// "12.5", "3": stock reads as people write it.
    public static func format(_ milli: Int64) -> String { FixedPoint.trimmed(FixedPoint.format(milli, places: 3)) }
}
