import Wire

extension Catalog_ServiceClient {
    /// Imports a whole price list: `start`, then the file in 1 MiB chunks (each well under the
    /// 4 MiB a message may be), and the import's report.
    public func importPriceList(_ start: Catalog_ImportStart, file: [UInt8], options: CallOptions = CallOptions()) async throws
        -> Catalog_ImportReport
    {
        try await importPriceList(options: options) { stream in
            var first = Catalog_ImportPriceListRequest()
            first.start = start
            try await stream.send(first)
            var offset = 0
            while offset < file.count {
                var chunk = Catalog_ImportPriceListRequest()
                chunk.data = Array(file[offset..<min(offset + (1 << 20), file.count)])
                try await stream.send(chunk)
                offset += chunk.data.count
            }
            try await stream.finishSending()
            return try await stream.singleResponse()
        }
    }
}

extension Catalog_ProposalStatus {
    /// "draft", "approved", "sent", "accepted", "declined", "superseded": as people and messages say it.
    public var name: String {
        switch self {
        case .draft: "draft"
        case .approved: "approved"
        case .sent: "sent"
        case .accepted: "accepted"
        case .declined: "declined"
        case .superseded: "superseded"
        default: "unspecified"
        }
    }
}
