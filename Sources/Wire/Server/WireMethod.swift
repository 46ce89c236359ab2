/// A method of a service, as the generated code names it (`Intake_Method.submitLead`): one case per
/// RPC, so code that names a method by its case stops compiling when the proto renames it.
public protocol WireMethod: RawRepresentable, CaseIterable, Hashable, Sendable where RawValue == String {
    /// The fully qualified service name (`leadwire.intake.v1.Intake`).
    static var serviceName: String { get }
    /// `/package.Service/Method`, as the `:path` header carries it.
    var path: String { get }
}
