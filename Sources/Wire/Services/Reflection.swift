import CWireProtos

/// The descriptor tables gen-proto compiled into CWireProtos, indexed for server reflection
/// (grpc/grpc doc/server-reflection.md).
final class ReflectionIndex: Sendable {
    struct File: Sendable {
        let bytes: [UInt8]
        let dependencies: [String]
        let symbols: [String]
    }

    let serviceNames: [String]
    let files: [String: File]
    let fileBySymbol: [String: String]

    init(serviceNames: [String]) {
        self.serviceNames = serviceNames.sorted()
        var files = [String: File]()
        var bySymbol = [String: String]()
        for i in 0..<wire_proto_file_count {
            let f = wire_proto_file_at(i)!.pointee
            let name = String(cString: f.name)
            let deps = (0..<f.dependency_count).map { String(cString: f.dependencies[$0]!) }
            let symbols = (0..<f.symbol_count).map { String(cString: f.symbols[$0]!) }
            files[name] = File(bytes: Array(UnsafeBufferPointer(start: f.bytes, count: f.length)), dependencies: deps, symbols: symbols)
            for s in symbols { bySymbol[s] = name }
        }
        self.files = files
        self.fileBySymbol = bySymbol
    }

    /// The named file first, then its transitive imports not yet sent on this stream.
    func closure(of name: String, sent: inout Set<String>) -> [[UInt8]] {
        var out = [[UInt8]]()
        var queue = [name]
        var seen = Set<String>()
        while !queue.isEmpty {
            let n = queue.removeFirst()
            guard seen.insert(n).inserted, let f = files[n] else { continue }
            if out.isEmpty || !sent.contains(n) {
                out.append(f.bytes)
                sent.insert(n)
            }
            queue += f.dependencies
        }
        return out
    }
}

typealias ReflectionRequest = Grpc_Reflection_V1_ServerReflectionRequest
typealias ReflectionResponse = Grpc_Reflection_V1_ServerReflectionResponse

/// Answers one reflection request; errors go in `error_response`, never in the call's status.
private func answer(_ request: ReflectionRequest, index: ReflectionIndex, sent: inout Set<String>) -> ReflectionResponse {
    var response = ReflectionResponse()
    response.validHost = request.host
    response.originalRequest = request
    func notFound(_ what: String) -> ReflectionResponse.OneOf_MessageResponse {
        var e = Grpc_Reflection_V1_ErrorResponse()
        e.errorCode = Int32(StatusCode.notFound.rawValue)
        e.errorMessage = what
        return .errorResponse(e)
    }
    func files(_ list: [[UInt8]]) -> ReflectionResponse.OneOf_MessageResponse {
        var f = Grpc_Reflection_V1_FileDescriptorResponse()
        f.fileDescriptorProto = list
        return .fileDescriptorResponse(f)
    }
    switch request.messageRequest {
    case .fileByFilename(let name):
        response.messageResponse =
            index.files[name] == nil ? notFound("file \(name) is not known here") : files(index.closure(of: name, sent: &sent))
    case .fileContainingSymbol(let symbol):
        if let file = index.fileBySymbol[symbol] {
            response.messageResponse = files(index.closure(of: file, sent: &sent))
        } else {
            response.messageResponse = notFound("symbol \(symbol) is not known here")
        }
    case .fileContainingExtension(let ext):
        response.messageResponse = notFound("no extension \(ext.extensionNumber) of \(ext.containingType) is known here")
    case .allExtensionNumbersOfType(let type):
        if index.fileBySymbol[type] != nil {
            var e = Grpc_Reflection_V1_ExtensionNumberResponse()
            e.baseTypeName = type
            response.messageResponse = .allExtensionNumbersResponse(e)
        } else {
            response.messageResponse = notFound("type \(type) is not known here")
        }
    case .listServices:
        var l = Grpc_Reflection_V1_ListServiceResponse()
        l.service = index.serviceNames.map {
            var s = Grpc_Reflection_V1_ServiceResponse()
            s.name = $0
            return s
        }
        response.messageResponse = .listServicesResponse(l)
    case nil:
        var e = Grpc_Reflection_V1_ErrorResponse()
        e.errorCode = Int32(StatusCode.invalidArgument.rawValue)
        e.errorMessage = "the request names no question"
        response.messageResponse = .errorResponse(e)
    }
    return response
}

private func serveReflection(
    index: ReflectionIndex, requests: RequestStream<ReflectionRequest>, responses: ResponseWriter<ReflectionResponse>
) async throws {
    var sent = Set<String>()
    for try await request in requests {
        try await responses.write(answer(request, index: index, sent: &sent))
    }
}

struct ReflectionV1Service: Grpc_Reflection_V1_ServerReflection_Service {
    let index: ReflectionIndex

    func serverReflectionInfo(
        requests: RequestStream<ReflectionRequest>, responses: ResponseWriter<ReflectionResponse>, context: ServerContext
    ) async throws {
        try await serveReflection(index: index, requests: requests, responses: responses)
    }
}

/// grpc.reflection.v1alpha: same messages, other package. grpcurl 1.8.6 and Python's reflection
/// client speak only this one.
struct ReflectionV1AlphaService: WireService {
    static var serviceName: String { "grpc.reflection.v1alpha.ServerReflection" }
    let index: ReflectionIndex

    var methods: [ServerMethod] {
        [
            .bidirectionalStreaming("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") {
                (requests: RequestStream<ReflectionRequest>, responses: ResponseWriter<ReflectionResponse>, _) in
                try await serveReflection(index: index, requests: requests, responses: responses)
            }
        ]
    }
}
