import Crypto
import FoundationEssentials
import NIOConcurrencyHelpers
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// What a token says about its bearer. Serialised as a JWT (HS256) payload, so any JWT tool can
/// read it; only a holder of the signing key can make one.
public struct Claims: Codable, Sendable, Hashable {
    /// The principal: a person's login, a service name, a dashboard's name.
    public var sub: String
    public var roles: [String]
    /// For contractors: the contractor id whose plans the token reaches.
    public var ctr: String?
    /// Issued at / expires at, seconds since the epoch (JWT's units).
    public var iat: Int64
    public var exp: Int64
    /// Not before (seconds since the epoch), when a minter set it.
    public var nbf: Int64?
    public var iss: String

    public init(subject: String, roles: [String], contractor: String? = nil, issuedAt: Int64, expiresAt: Int64) {
        sub = subject
        self.roles = roles
        ctr = contractor
        iat = issuedAt
        exp = expiresAt
        iss = "leadwire"
    }
}

/// Why a token was not accepted; each becomes UNAUTHENTICATED with this text.
public enum TokenError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case badSignature
    case expired(at: Int64)
    case notYetValid(from: Int64)
    case wrongIssuer(String)

    public var description: String {
        switch self {
        case .malformed(let why): return "the token is not a Leadwire token (\(why))"
        case .badSignature: return "the token's signature does not verify: it was not issued with this deployment's key, or was altered"
        case .expired(let at): return "the token expired at \(at) (seconds since the epoch); issue a new one with `leadctl token issue`"
        case .notYetValid(let from): return "the token is not valid before \(from) (seconds since the epoch, its nbf claim)"
        case .wrongIssuer(let iss): return "the token was issued by \"\(iss)\", not leadwire"
        }
    }
}

/// The deployment's HMAC-SHA256 key: created on first start in the data directory (mode 0600),
/// shared by the three services (each verifies tokens locally) and by `leadctl`, which issues them.
public struct SigningKey: Sendable {
    private let bytes: [UInt8]
    private var key: SymmetricKey { SymmetricKey(data: bytes) }

    public init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// `LEADWIRE_KEY_FILE` if set (e.g. a volume shared by containers), else `<data-dir>/signing.key`.
    public static func path(dataDir: String) -> String {
        ProcessInfoEnv.value("LEADWIRE_KEY_FILE").flatMap { $0.isEmpty ? nil : $0 } ?? dataDir + "/signing.key"
    }

    /// Reads the key file, or creates it if missing. Several services starting at once agree on one
    /// key: the new key is written to a private temporary file and linked into place, which fails
    /// if another process got there first (then its key is read).
    /// A key file that others may read is refused, as ssh refuses a private key: anyone who can
    /// read it can mint tokens with any role. `allowReadableByOthers` accepts it (say, a volume
    /// shared by containers running as different users).
    public static func loadOrCreate(path: String, allowReadableByOthers: Bool = false) throws -> SigningKey {
        if let k = try read(path, allowReadableByOthers: allowReadableByOthers) { return k }
        let fresh = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        let text = Base64.encode(fresh, padded: true) + "\n"
        let tmp = "\(path).\(getpid()).tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw KeyFileError("cannot create \(tmp): errno \(errno)") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        fsync(fd)
        close(fd)
        defer { unlink(tmp) }
        guard written == bytes.count else { throw KeyFileError("cannot write \(tmp)") }
        if link(tmp, path) != 0 && errno != EEXIST { throw KeyFileError("cannot create \(path): errno \(errno)") }
        guard let k = try read(path, allowReadableByOthers: allowReadableByOthers) else { throw KeyFileError("\(path) vanished") }
        return k
    }

    public static func load(path: String) throws -> SigningKey {
        guard let k = try read(path, allowReadableByOthers: true) else {
            throw KeyFileError(
                "no signing key at \(path): start the services once (scripts/up) or point --data-dir at their data directory")
        }
        return k
    }

    private static func read(_ path: String, allowReadableByOthers: Bool) throws -> SigningKey? {
        let fd = open(path, O_RDONLY)
        if fd < 0 {
            if errno == ENOENT { return nil }
            if errno == EACCES { throw KeyFileError("cannot read \(path): permission denied (run the service as the key's owner)") }
            throw KeyFileError("cannot read \(path): errno \(errno)")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw KeyFileError("cannot stat \(path): errno \(errno)") }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            throw KeyFileError("\(path) is a directory, not a key file: point LEADWIRE_KEY_FILE (or --data-dir) at the signing.key file")
        }
        if !allowReadableByOthers && info.st_mode & 0o077 != 0 {
            let mode = String(info.st_mode & 0o777, radix: 8)
            throw KeyFileError(
                "\(path) is readable by other users (mode 0\(mode)): anyone who reads it can mint tokens. "
                    + "Run `chmod 600 \(path)`, or start with --allow-shared-key (env LEADWIRE_ALLOW_SHARED_KEY=1) if this is intended")
        }
        var buf = [UInt8](repeating: 0, count: 256)
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw KeyFileError("\(path) is empty") }
        let text = buf[0..<n].filter { $0 != UInt8(ascii: "\n") && $0 != UInt8(ascii: "\r") }
        guard let bytes = Base64.decode(text), bytes.count >= 32 else {
            throw KeyFileError("\(path) does not hold a base64 key of 32 bytes or more")
        }
        return SigningKey(bytes: bytes)
    }

    // MARK: JWT (RFC 7519), HS256 only

    private static let header = base64url(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))

    public func issue(_ claims: Claims) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return sign(payload: (try? encoder.encode(claims)).map { Array($0) } ?? [])
    }

    /// A token carrying `payload` as it is (tests mint odd payloads with it).
    func sign(payload: [UInt8]) -> String {
        let signingInput = Self.header + "." + Self.base64url(payload)
        let mac = HMAC<SHA256>.authenticationCode(for: Array(signingInput.utf8), using: key)
        return signingInput + "." + Self.base64url(Array(mac))
    }

    /// The claims of a token this key signed and that has not expired at `now` (seconds).
    public func verify(_ token: String, now: Int64) throws(TokenError) -> Claims {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw .malformed("expected three dot-separated parts, got \(parts.count)") }
        // Only our own header is accepted: no "alg":"none", no algorithm confusion.
        guard parts[0] == Self.header else { throw .malformed("unsupported header; only HS256 tokens are issued here") }
        guard let mac = Self.unbase64url(parts[2]) else { throw .malformed("signature is not base64url") }
        let signingInput = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: signingInput, using: key) else { throw .badSignature }
        guard let payload = Self.unbase64url(parts[1]) else { throw .malformed("payload is not base64url") }
        // A JSON decoder keeps the last of two equal keys, another parser the first: a payload with
        // `roles` twice means different things to different readers, so it is refused.
        if let dup = Self.duplicateKey(in: payload) { throw .malformed("the payload has the key \"\(dup)\" twice") }
        let claims: Claims
        do {
            claims = try JSONDecoder().decode(Claims.self, from: Data(payload))
        } catch {
            throw .malformed("payload is not the expected JSON")
        }
        guard claims.iss == "leadwire" else { throw .wrongIssuer(claims.iss) }
        guard claims.exp > now else { throw .expired(at: claims.exp) }
        if let nbf = claims.nbf, nbf > now + Self.clockSkew { throw .notYetValid(from: nbf) }
        return claims
    }

    /// Leeway for `nbf` between the clocks of the machine that minted a token and the one checking it.
    static let clockSkew: Int64 = 5

    /// The first key that appears twice in the payload's top-level object (keys compared after
    /// unescaping, so `"rol\u0065s"` is `roles`), or nil.
    static func duplicateKey(in json: [UInt8]) -> String? {
        var seen = Set<String>()
        var depth = 0
        var i = 0
        while i < json.count {
            let b = json[i]
            if b == UInt8(ascii: "\"") {
                let start = i
                i += 1
                while i < json.count, json[i] != UInt8(ascii: "\"") {
                    i += json[i] == UInt8(ascii: "\\") ? 2 : 1
                }
                let end = min(i, json.count - 1)
                i += 1
                guard depth == 1 else { continue }
                var j = i
                while j < json.count, json[j] == 0x20 || json[j] == 0x0a || json[j] == 0x0d || json[j] == 0x09 { j += 1 }
                guard j < json.count, json[j] == UInt8(ascii: ":") else { continue }
                let raw = Array(json[start...end])
                let key = (try? JSONDecoder().decode(String.self, from: Data(raw))) ?? String(decoding: raw, as: UTF8.self)
                if !seen.insert(key).inserted { return key }
                continue
            }
            if b == UInt8(ascii: "{") || b == UInt8(ascii: "[") { depth += 1 }
            if b == UInt8(ascii: "}") || b == UInt8(ascii: "]") { depth -= 1 }
            i += 1
        }
        return nil
    }

    static func base64url(_ bytes: [UInt8]) -> String {
        String(Base64.encode(bytes, padded: false).map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 })
    }

    static func unbase64url(_ s: Substring) -> [UInt8]? {
        let std = s.utf8.map { $0 == UInt8(ascii: "-") ? UInt8(ascii: "+") : $0 == UInt8(ascii: "_") ? UInt8(ascii: "/") : $0 }
        return Base64.decode(std)
    }
}

public struct KeyFileError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

/// Seconds since the epoch.
public func epochSeconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec)
}
