import Foundation
import LeadwireAPI
import Logging
import NIOConcurrencyHelpers
import Testing
import Wire

@testable import IntakeService

@Suite struct IntakeLoopbackTests {
    @Test func everyRPCOverARealSocket() async throws {
        let store = try temporaryIntakeStore()
        let clock = NIOLockedValueBox<Int64>(1_795_922_717_921)
        let api = IntakeAPI(store: store, hub: LeadChangeHub(), now: { clock.withLockedValue { $0 } }, logger: Logger(label: "test"))
        let server = WireServer(configuration: .init(port: 0), services: [api])
        let port = try await server.start()
        let channel = WireChannel(host: "127.0.0.1", port: port)
        let intake = Intake_ServiceClient(channel: channel)

        var create = Intake_CreateSourceRequest()
        var src = webForm()
        src.id = ""
        src.mailbox = "inbox@leadwire.test"
        create.source = src
        var source = try await intake.createSource(create)
        #expect(source.id == "src-1")
        var update = Intake_UpdateSourceRequest()
        source.replyDays = 3
        update.source = source
        #expect(try await intake.updateSource(update).replyDays == 3)
        var get = Intake_GetSourceRequest()
        get.id = source.id
        #expect(try await intake.getSource(get).replyDays == 3)
        #expect(try await intake.listSources(Intake_ListSourcesRequest()).sources.map(\.id) == [source.id])
        var toggle = Intake_SetSourceEnabledRequest()
        toggle.id = source.id
        toggle.enabled = true
        #expect(try await intake.setSourceEnabled(toggle).enabled)

        // Watch first, so the registration below arrives on it.
        let watched = Task {
            var w = Intake_WatchLeadsRequest()
            w.sourceId = source.id
            return try await intake.watchLeads(w) { call in try await call.receive()?.kind }
        }
        try await Task.sleep(nanoseconds: 100_000_000)

        var submit = goodRequest()
        submit.sourceId = source.id
        let lead = try await intake.submitLead(submit).lead!
        #expect(lead.replyDueAtMs - lead.receivedAtMs == 3 * 86_400_000)
        #expect(try await watched.value == "registered")

        let imported = try await intake.importLeads { call in
            var bad = submit
            bad.fields = []
            for r in [submit, bad, submit] { try await call.send(r) }
            try await call.finishSending()
            return try await call.singleResponse()
        }
        #expect(imported.accepted == 2 && imported.refused == 1)
        #expect(imported.results[1].errorCode == Int32(StatusCode.invalidArgument.rawValue))

        var mail = Intake_SubmitEmailRequest()
        mail.mailbox = "inbox@leadwire.test"
        mail.rawMessage = Array("From: Ivan <ivan@example.com>\nSubject: Re: \(lead.registrationNumber)\n\nthanks".utf8)
        #expect(try await intake.submitEmail(mail).attachedAsComment)

        var getLead = Intake_GetLeadRequest()
        getLead.id = lead.id
        #expect(try await intake.getLead(getLead).comments.map(\.text) == ["thanks"])
        var lookup = Intake_LookupStatusRequest()
        lookup.registrationNumber = lead.registrationNumber
        #expect(try await intake.lookupStatus(lookup).publicComments.count == 1)
        var list = Intake_ListLeadsRequest()
        list.sourceId = source.id
        #expect(try await intake.listLeads(list).leads.count == 3)

        var comment = Intake_AddCommentRequest()
        comment.leadId = lead.id
        comment.author = "manager"
        comment.text = "call back @petrov"
        #expect(try await intake.addComment(comment).mentions == ["petrov"])

        var debt = Intake_SetClientDebtRequest()
        debt.clientId = lead.clientId
        debt.debt = "10.00"
        #expect(try await intake.setClientDebt(debt).debt == "10.00")
        var accept = Intake_AcceptLeadRequest()
        accept.id = lead.id
        do {
            _ = try await intake.acceptLead(accept)
            Issue.record("acceptance must be refused while the client has debt")
        } catch let e as RPCError {
            #expect(e.code == .failedPrecondition)
            let status = try ProtoCodec.decode(Google_Rpc_Status.self, from: e.details ?? [])
            #expect(status.details.first?.typeUrl == "type.googleapis.com/google.rpc.PreconditionFailure")
        }
        debt.debt = "0"
        _ = try await intake.setClientDebt(debt)
        var deferReq = Intake_DeferLeadRequest()
        deferReq.id = lead.id
        deferReq.reason = "season"
        deferReq.revisitDate = "2027-03-01"
        #expect(try await intake.deferLead(deferReq).status == .deferred)
        #expect(try await intake.acceptLead(accept).status == .accepted)
        var complete = Intake_CompleteLeadRequest()
        complete.id = lead.id
        complete.outcome = .customerInterest
        complete.reference = "CI-1"
        #expect(try await intake.completeLead(complete).status == .processed)
        var reject = Intake_RejectLeadRequest()
        reject.id = imported.results[0].leadId
        reject.reason = "duplicate"
        #expect(try await intake.rejectLead(reject).status == .rejected)
        var getClient = Intake_GetClientRequest()
        getClient.id = lead.clientId
        #expect(try await intake.getClient(getClient).leadIds.count == 3)

        await channel.close()
        await server.shutdown()
    }
}
