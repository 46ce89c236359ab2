import Foundation
import LeadwireAPI
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
        let auth = AuthInterceptor(key: key, policy: ["/x.S/M": AccessPolicy.intake.byPath[Intake_Method.submitLead.path]!])
        #expect(throws: RPCError.self) { try auth.authenticate([]) }
        do {
            _ = try auth.authenticate(header("Basic abc"))
            Issue.record("accepted a Basic header")
        } catch let e as RPCError {
            #expect(e.code == .unauthenticated)
        }
        let late = key.issue(claims(exp: 5))
        do {
            _ = try auth.authenticate(header("Bearer " + late))
            Issue.record("accepted an expired token")
        } catch let e as RPCError {
            #expect(e.code == .unauthenticated && e.message.contains("expired"))
        }
        let fresh = key.issue(claims(exp: epochSeconds() + 60, roles: ["dashboard"]))
        let verified = try auth.authenticate(header("Bearer " + fresh))
        #expect(verified.claims.sub == "anna" && verified.granted == Roles.permissions(["dashboard"]))
        #expect(AuthInterceptor.isOpen("/grpc.health.v1.Health/Check"))
        #expect(AuthInterceptor.isOpen("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"))
        #expect(!AuthInterceptor.isOpen("/leadwire.intake.v1.Intake/SubmitLead"))
    }

    func header(_ values: String...) -> [Metadata.Value] { values.map { .string($0) } }

    func refusal(_ auth: AuthInterceptor, _ values: [Metadata.Value]) -> String? {
        do {
            _ = try auth.authenticate(values)
            return nil
        } catch let e as RPCError {
            return e.code == .unauthenticated ? e.message : "wrong code \(e.code)"
        } catch {
            return "\(error)"
        }
    }

    @Test func schemeIsCaseInsensitiveWithOneSpaceAndOneHeader() {
        let auth = AuthInterceptor(key: key, policy: [:])
        let t = key.issue(claims(exp: epochSeconds() + 60))
        #expect(refusal(auth, header("BEARER " + t)) == nil)
        #expect(refusal(auth, header("bEaReR " + t)) == nil)
        #expect(refusal(auth, header("Bearer  " + t))?.contains("one space") == true)
        #expect(refusal(auth, header("Bearer " + t + " extra"))?.contains("one space") == true)
        #expect(refusal(auth, header("Bearer"))?.contains("Bearer <token>") == true)
        #expect(refusal(auth, header("Bearer " + t, "Bearer " + t))?.contains("2 authorization headers") == true)
    }

    @Test func notBeforeIsHonoured() throws {
        let now = epochSeconds()
        let early = key.sign(
            payload: Array(#"{"exp":\#(now + 600),"iat":\#(now),"iss":"leadwire","nbf":\#(now + 300),"roles":["admin"],"sub":"anna"}"#.utf8)
        )
        #expect(throws: TokenError.notYetValid(from: now + 300)) { try key.verify(early, now: now) }
        #expect(try key.verify(early, now: now + 301).sub == "anna")
        let auth = AuthInterceptor(key: key, policy: [:])
        #expect(refusal(auth, header("Bearer " + early))?.contains("not valid before") == true)
    }

    @Test func duplicateKeysAreRefusedEvenWhenEscaped() throws {
        let now = epochSeconds()
        let twice = key.sign(
            payload: Array(#"{"exp":\#(now + 600),"iat":1,"iss":"leadwire","roles":["dashboard"],"roles":["admin"],"sub":"x"}"#.utf8))
        #expect(throws: TokenError.malformed("the payload has the key \"roles\" twice")) { try key.verify(twice, now: now) }
        let escaped = key.sign(
            payload: Array(#"{"exp":\#(now + 600),"iat":1,"iss":"leadwire","roles":["dashboard"],"rol\u0065s":["admin"],"sub":"x"}"#.utf8))
        #expect(throws: TokenError.self) { try key.verify(escaped, now: now) }
        let expTwice = key.sign(payload: Array(#"{"exp":1,"exp":\#(now + 600),"iat":1,"iss":"leadwire","roles":["admin"],"sub":"x"}"#.utf8))
        #expect(throws: TokenError.self) { try key.verify(expTwice, now: now) }
        // Nested objects may repeat a top-level key's name.
        let nested = key.sign(
            payload: Array(#"{"exp":\#(now + 600),"iat":1,"iss":"leadwire","roles":["admin"],"sub":"x","ext":{"sub":"y"}}"#.utf8))
        #expect(try key.verify(nested, now: now).sub == "x")
    }
}

/// The access table in docs/rpc-catalogue.md is generated from AccessPolicy; it must not drift.
@Suite struct AccessTableTests {
    @Test func documentedTableIsTheEnforcedOne() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let doc = try String(contentsOf: root.appendingPathComponent("docs/rpc-catalogue.md"), encoding: .utf8)
        let begin = "<!-- access-table: begin (scripts/gen-access-table) -->\n"
        let end = "<!-- access-table: end -->"
        let start = try #require(doc.range(of: begin)).upperBound
        let stop = try #require(doc.range(of: end)).lowerBound
        #expect(String(doc[start..<stop]) == AccessPolicy.markdownTable(), "run scripts/gen-access-table and commit docs/rpc-catalogue.md")
    }

    /// The policy and the services are built from the same generated method enums: every method
    /// served has a rule, and no rule names a method that is not served.
    @Test func thePolicyCoversExactlyTheMethodsServed() {
        #expect(Set(AccessPolicy.intake.byPath.keys) == Set(Intake_Method.allCases.map(\.path)))
        #expect(Set(AccessPolicy.routing.byPath.keys) == Set(Routing_Method.allCases.map(\.path)))
        #expect(Set(AccessPolicy.report.byPath.keys) == Set(Report_Method.allCases.map(\.path)))
        #expect(AccessPolicy.intake.byPath[Intake_Method.setIntakeOpen.path]?.permissions == [Permission.intakeAdmin])
    }

    @Test func everyRoleIsInTheTableAndEveryRuleNamesKnownPermissions() {
        #expect(Set(AccessPolicy.roleOrder) == Set(Roles.grants.keys))
        let known = Set(Roles.grants.values.flatMap { $0 })
        for s in AccessPolicy.services {
            for (method, _, rule) in s.methods {
                #expect(!rule.permissions.isEmpty && rule.permissions.allSatisfy { known.contains($0) }, "\(s.name).\(method)")
            }
        }
    }
}
