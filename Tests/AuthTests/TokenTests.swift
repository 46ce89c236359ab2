import Testing
import Wire

@testable import Auth

@Suite struct TokenTests {
    let key = SigningKey(bytes: Array(repeating: 7, count: 32))
    let other = SigningKey(bytes: Array(repeating: 8, count: 32))

    func claims(exp: Int64 = 2_000, roles: [String] = ["admin"]) -> Claims {
        Claims(subject: "anna", roles: roles, contractor: nil, issuedAt: 1_000, expiresAt: exp)
    }

    @Test func roundTripAndExpiry() throws {
        let t = key.issue(claims())
        #expect(t.split(separator: ".").count == 3)
        #expect(try key.verify(t, now: 1_999) == claims())
        #expect(throws: TokenError.expired(at: 2_000)) { try key.verify(t, now: 2_000) }
    }

    @Test func forgedAlteredAndMalformedTokensAreRefused() {
        let t = key.issue(claims())
        #expect(throws: TokenError.badSignature) { try other.verify(t, now: 1_500) }
        // Change the payload (roles) but keep the signature.
        let parts = t.split(separator: ".").map(String.init)
        let forgedPayload = SigningKey.base64url(Array(#"{"exp":9999,"iat":1,"iss":"leadwire","roles":["admin"],"sub":"mallory"}"#.utf8))
        #expect(throws: TokenError.badSignature) { try key.verify(parts[0] + "." + forgedPayload + "." + parts[2], now: 1_500) }
        // "alg":"none" and other headers are refused before anything else.
        let none = SigningKey.base64url(Array(#"{"alg":"none","typ":"JWT"}"#.utf8))
        #expect(throws: TokenError.self) { try key.verify(none + "." + parts[1] + ".", now: 1_500) }
        #expect(throws: TokenError.self) { try key.verify("abc", now: 1_500) }
        #expect(throws: TokenError.self) { try key.verify(parts[0] + "." + parts[1] + ".***", now: 1_500) }
    }

    @Test func rolesGrantPermissions() {
        #expect(Roles.permissions(["dashboard"]).contains(Permission.reportsRead))
        #expect(!Roles.permissions(["dashboard"]).contains(Permission.leadsWrite))
        for stock in ["Sales manager", "Marketer", "Head of sales"] {
            #expect(Roles.permissions([stock]).contains(Permission.leadsWrite), "\(stock) must add and change leads")
        }
        #expect(Roles.permissions(["contractor", "nonsense"]) == [Permission.contractorSelf])
    }

    @Test func interceptorRefusesWithThePreciseStatus() throws {
        let auth = AuthInterceptor(key: key, policy: ["/x.S/M": Permission.leadsWrite])
        #expect(throws: RPCError.self) { try auth.authenticate(nil) }
        do {
            _ = try auth.authenticate("Basic abc")
            Issue.record("accepted a Basic header")
        } catch let e as RPCError {
            #expect(e.code == .unauthenticated)
        }
        let late = key.issue(claims(exp: 5))
        do {
            _ = try auth.authenticate("Bearer " + late)
            Issue.record("accepted an expired token")
        } catch let e as RPCError {
            #expect(e.code == .unauthenticated && e.message.contains("expired"))
        }
        let fresh = key.issue(claims(exp: epochSeconds() + 60, roles: ["dashboard"]))
        let verified = try auth.authenticate("Bearer " + fresh)
        #expect(verified.claims.sub == "anna" && verified.granted == Roles.permissions(["dashboard"]))
        #expect(AuthInterceptor.isOpen("/grpc.health.v1.Health/Check"))
        #expect(AuthInterceptor.isOpen("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"))
        #expect(!AuthInterceptor.isOpen("/leadwire.intake.v1.Intake/SubmitLead"))
    }
}
