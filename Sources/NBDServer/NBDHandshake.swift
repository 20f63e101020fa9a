// NBDHandshake: the option haggling of one NBD connection (fixed newstyle;
// docs/nbd.md, "Protocol"), as a state machine that returns actions. It
// keeps what the client negotiated (NO_ZEROES, structured replies, the
// selected meta context, TLS) and decides every answer; NBDConnection does
// what the actions say (send a reply, look an export up off the event loop,
// put TLS under the decoder, close) and reports back (`tlsStarted`,
// `metaContextSelected`). No I/O, no channel: unit tests drive it directly.
import NIOCore

struct NBDHandshake {
    enum Action: Equatable {
        /// Log a warning about the client.
        case warn(String)
        /// Send an option reply (an ACK or an error, with a message).
        case reply(option: UInt32, type: UInt32, message: String)
        /// Close the connection.
        case close
        /// Put TLS under the decoder (the ACK was sent before), then call
        /// `tlsStarted()`.
        case startTLS
        /// Answer NBD_OPT_LIST with the exports.
        case list
        /// Answer NBD_OPT_INFO about export `name`.
        case info(name: String)
        /// Open export `name`, answer NBD_OPT_GO and start transmission.
        case go(name: String)
        /// Open export `name` and answer NBD_OPT_EXPORT_NAME (which cannot
        /// answer with an error: close if it is not there).
        case exportName(String)
        /// Answer a LIST/SET_META_CONTEXT for export `name` with `contexts`
        /// if the export exists; after a SET that named contexts, call
        /// `metaContextSelected(name)`.
        case metaContext(option: UInt32, name: String, contexts: [String], set: Bool)
    }

    /// The server's TLS mode (nil: TLS is not enabled).
    let tls: NBDTLSMode?
    /// Why the client is refused (over the connection limit), if it is:
    /// every option gets this as an error.
    var refusal: String?

    private(set) var noZeroes = false
    private(set) var structured = false
    /// Export name of the last SET_META_CONTEXT that selected base:allocation.
    private(set) var metaName: String?
    private(set) var tlsActive = false
    private(set) var optionCount = 0

    init(tls: NBDTLSMode?, refusal: String? = nil) {
        self.tls = tls
        self.refusal = refusal
    }

    /// The client's flags; no actions means: go on to the options.
    mutating func clientFlags(_ f: UInt32) -> [Action] {
        if f & ~(NBD.clientFlagFixedNewstyle | NBD.clientFlagNoZeroes) != 0 {
            return [.warn("unknown client flags 0x\(String(f, radix: 16)); closing"), .close]
        }
        noZeroes = f & NBD.clientFlagNoZeroes != 0
        return []
    }

    /// TLS is now under the decoder: what was negotiated in plaintext does
    /// not count (NetworkBlockDevice/nbd doc/proto.md, "TLS support").
    mutating func tlsStarted() {
        tlsActive = true
        structured = false
        metaName = nil
    }

    /// A SET_META_CONTEXT for export `name` succeeded.
    mutating func metaContextSelected(_ name: String) { metaName = name }

    /// Whether block status is served on export `name`.
    func metaActive(forExport name: String) -> Bool {
        structured && metaName != nil && metaName == name
    }

    private static func reply(_ code: UInt32, _ type: UInt32, _ message: String = "") -> Action {
        .reply(option: code, type: type, message: message)
    }

    /// Counts an option; past the limit the connection closes.
    private mutating func count() -> [Action]? {
        optionCount += 1
        if optionCount > NBDLimits.maxOptionsPerHandshake {
            return [.warn("more than \(NBDLimits.maxOptionsPerHandshake) options; closing"), .close]
        }
        return nil
    }

    /// The answer to any option of a refused client, or of a plaintext
    /// client that must use TLS; nil if the option is served.
    private func refused(_ code: UInt32) -> [Action]? {
        if let why = refusal {
            switch code {
            case NBD.optExportName: return [.close]
            case NBD.optAbort: return [Self.reply(code, NBD.repAck), .close]
            default: return [Self.reply(code, NBD.repErrPolicy, why)]
            }
        }
        if tls == .require && !tlsActive && code != NBD.optStartTLS && code != NBD.optAbort {
            if code == NBD.optExportName {
                return [.warn("plaintext NBD_OPT_EXPORT_NAME while TLS is required; closing"), .close]
            }
            return [Self.reply(code, NBD.repErrTLSReqd, "this server requires TLS (nbds:// URIs, NBD_OPT_STARTTLS)")]
        }
        return nil
    }

    /// An option whose data the decoder skipped (too long).
    mutating func optionTooBig(_ code: UInt32, length: Int) -> [Action] {
        if let stop = count() { return stop }
        if let r = refused(code) { return r }
        let warn = Action.warn("option \(code) with \(length) bytes of data refused")
        switch code {
        case NBD.optExportName:
            return [warn, .close]
        case NBD.optList, NBD.optInfo, NBD.optGo, NBD.optStructuredReply, NBD.optListMetaContext,
             NBD.optSetMetaContext, NBD.optAbort, NBD.optStartTLS:
            if code == NBD.optSetMetaContext { metaName = nil }
            return [warn, Self.reply(code, NBD.repErrTooBig, "option data too long (\(length) bytes)")]
        default:
            return [warn, Self.reply(code, NBD.repErrUnsup, "unsupported option \(code)")]
        }
    }

    /// An option with its data.
    mutating func option(_ code: UInt32, _ data: ByteBuffer) -> [Action] {
        if let stop = count() { return stop }
        if let r = refused(code) { return r }
        switch code {
        case NBD.optStartTLS:
            guard tls != nil else { return [Self.reply(code, NBD.repErrUnsup, "TLS is not enabled on this server")] }
            guard !tlsActive else { return [Self.reply(code, NBD.repErrInvalid, "TLS is already active")] }
            guard data.readableBytes == 0 else {
                return [Self.reply(code, NBD.repErrInvalid, "NBD_OPT_STARTTLS takes no data")]
            }
            // The ACK goes out in plaintext; everything after it through TLS.
            return [Self.reply(code, NBD.repAck), .startTLS]

        case NBD.optExportName:
            var d = data
            guard let name = NBDOptionParser.readString(&d, length: d.readableBytes) else {
                return [.warn("malformed export name; closing"), .close]
            }
            return [.exportName(name)]

        case NBD.optAbort:
            return [Self.reply(code, NBD.repAck), .close]

        case NBD.optList:
            guard data.readableBytes == 0 else { return [Self.reply(code, NBD.repErrInvalid, "NBD_OPT_LIST takes no data")] }
            return [.list]

        case NBD.optInfo, NBD.optGo:
            guard let (name, _) = NBDOptionParser.infoRequest(data) else {
                return [Self.reply(code, NBD.repErrInvalid, "malformed NBD_OPT_INFO/GO data")]
            }
            return [code == NBD.optGo ? .go(name: name) : .info(name: name)]

        case NBD.optStructuredReply:
            guard data.readableBytes == 0 else {
                return [Self.reply(code, NBD.repErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data")]
            }
            structured = true
            return [Self.reply(code, NBD.repAck)]

        case NBD.optListMetaContext, NBD.optSetMetaContext:
            let set = code == NBD.optSetMetaContext
            if set { metaName = nil }  // replaced even if this one fails
            guard structured else { return [Self.reply(code, NBD.repErrInvalid, "negotiate structured replies first")] }
            guard let (name, queries) = NBDOptionParser.metaContextRequest(data) else {
                return [Self.reply(code, NBD.repErrInvalid, "malformed meta context request")]
            }
            var contexts = Set<String>()
            for q in queries {
                guard let m = NBDMetaContext.match(q, listing: !set) else {
                    return [Self.reply(code, NBD.repErrInvalid, "malformed meta context query '\(q)'")]
                }
                contexts.formUnion(m)
            }
            if !set && queries.isEmpty { contexts = [NBDMetaContext.baseAllocation] }
            return [.metaContext(option: code, name: name, contexts: contexts.sorted(), set: set)]

        default:
            // EXTENDED_HEADERS and anything unknown.
            return [Self.reply(code, NBD.repErrUnsup, "unsupported option \(code)")]
        }
    }
}
