// Fuzz target nbdwire: the NBD server's decoder and option parsers
// (NBDDecoder, NBDOptionParser, NBDMetaContext, NBDRequest) over bytes a
// client sends, arriving in pieces as a socket delivers them, with the
// connection handler's moves played here: client flags lead to option
// haggling, INFO/GO and the meta context options are parsed, GO or
// EXPORT_NAME starts transmission (writes accepted for some export names),
// requests are checked against an export's size. The decoder may never
// hand out more than it was given, nor buffer an option over 64 KiB.
import FuzzSupport
import NBDServer
import NIOCore

enum Target {
    static let allocator = ByteBufferAllocator()
    static let exportSize: UInt64 = 9 << 20
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Fuzz.one(data, size) { input in
        let control = NBDDecoderControl()
        // Memory for a payload over 1 MiB comes free only on the next read.
        var asked = false
        control.admitPayload = { n in
            defer { asked.toggle() }
            return n <= 1 << 20 || asked
        }
        let decoder = NBDDecoder(control: control)
        var buffer = Target.allocator.buffer(capacity: 0)
        var rest = input[...]
        var handedOut = 0
        stream: while !rest.isEmpty {
            let piece = rest.prefix(Int(rest.first!) % 200 + 1)
            rest = rest.dropFirst(piece.count)
            buffer.writeBytes(piece)
            control.paused = false  // the handler resumes on every read
            while let m = decoder.next(&buffer) {
                switch m {
                case .clientFlags:
                    control.phase = .options
                case .option(let code, let data):
                    Fuzz.check(data.readableBytes <= NBDLimits.maxOptionLength, "an option payload of \(data.readableBytes) bytes")
                    handedOut += data.readableBytes
                    switch code {
                    case NBD.optInfo, NBD.optGo:
                        guard let r = NBDOptionParser.infoRequest(data) else { break }
                        Fuzz.check(r.name.utf8.count <= NBDLimits.maxStringLength, "a name of \(r.name.utf8.count) bytes")
                        if code == NBD.optGo {
                            control.phase = .transmission
                            control.acceptWrites = r.name.hasPrefix("w")
                        }
                    case NBD.optListMetaContext, NBD.optSetMetaContext:
                        guard let r = NBDOptionParser.metaContextRequest(data) else { break }
                        for q in r.queries { _ = NBDMetaContext.match(q, listing: code == NBD.optListMetaContext) }
                    case NBD.optExportName:
                        control.phase = .transmission
                    case NBD.optAbort:
                        break stream
                    default:
                        break
                    }
                case .optionTooBig(_, let length):
                    Fuzz.check(length > UInt32(NBDLimits.maxOptionLength), "an option of \(length) bytes called too big")
                case .request(let req, let payload):
                    _ = req.fits(size: Target.exportSize)
                    _ = req.end
                    if let p = payload {
                        Fuzz.check(req.type == NBD.cmdWrite && p.readableBytes == Int(req.length),
                                   "a payload of \(p.readableBytes) bytes for a request of \(req.length)")
                        handedOut += p.readableBytes
                    }
                    if req.type == NBD.cmdDisc { break stream }
                case .requestPayloadSkipped(let req):
                    Fuzz.check(req.type == NBD.cmdWrite, "a skipped payload of request type \(req.type)")
                case .violation:
                    break stream
                }
            }
            buffer.discardReadBytes()
        }
        Fuzz.check(handedOut <= input.count, "the decoder handed out \(handedOut) bytes of \(input.count)")
    }
}

runFuzzer(fuzzOne)
