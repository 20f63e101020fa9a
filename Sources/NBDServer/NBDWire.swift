// NBDWire: the byte layout of NBD messages (doc/proto.md of
// NetworkBlockDevice/nbd): the transmission request header, the option
// payloads the server parses (INFO/GO, LIST/SET_META_CONTEXT), metadata
// context queries, and the encoders of option replies, simple replies and
// structured reply chunks. Pure functions over ByteBuffer, no I/O.
import NIOCore

/// Limits the server enforces on what clients send.
public enum NBDLimits {
    /// Longest option payload the server reads; longer ones are skipped
    /// without buffering and answered with NBD_REP_ERR_TOO_BIG.
    public static let maxOptionLength = 64 * 1024
    /// Strings (export names, queries) MUST be no longer than 4096 bytes.
    public static let maxStringLength = 4096
    /// Maximum block size advertised and enforced (32 MiB): the largest
    /// READ, WRITE, CACHE or WRITE_ZEROES request served.
    public static let maxRequest = 32 * 1024 * 1024
    public static let minBlockSize: UInt32 = 512
    public static let preferredBlockSize: UInt32 = 4096
    /// Options accepted in one handshake before the server gives up on the client.
    public static let maxOptionsPerHandshake = 4096
}

/// One transmission request header (28 bytes).
public struct NBDRequest: Sendable, Equatable {
    public static let size = 28
    public var flags: UInt16
    public var type: UInt16
    public var handle: UInt64
    public var offset: UInt64
    public var length: UInt32

    public init(flags: UInt16, type: UInt16, handle: UInt64, offset: UInt64, length: UInt32) {
        self.flags = flags
        self.type = type
        self.handle = handle
        self.offset = offset
        self.length = length
    }

    /// Reads a header (magic included); nil if fewer than 28 bytes are
    /// readable (nothing is consumed then). `magicOK` tells whether the
    /// magic was right; the 28 bytes are consumed either way.
    public static func read(from buf: inout ByteBuffer) -> (request: NBDRequest, magicOK: Bool)? {
        guard buf.readableBytes >= size,
              let magic = buf.readInteger(as: UInt32.self),
              let flags = buf.readInteger(as: UInt16.self),
              let type = buf.readInteger(as: UInt16.self),
              let handle = buf.readInteger(as: UInt64.self),
              let offset = buf.readInteger(as: UInt64.self),
              let length = buf.readInteger(as: UInt32.self) else { return nil }
        return (NBDRequest(flags: flags, type: type, handle: handle, offset: offset, length: length),
                magic == NBD.requestMagic)
    }

    public func write(to buf: inout ByteBuffer) {
        buf.writeInteger(NBD.requestMagic)
        buf.writeInteger(flags)
        buf.writeInteger(type)
        buf.writeInteger(handle)
        buf.writeInteger(offset)
        buf.writeInteger(length)
    }

    /// The end of the range, or nil if offset + length overflows.
    public var end: UInt64? {
        let (e, o) = offset.addingReportingOverflow(UInt64(length))
        return o ? nil : e
    }

    /// True if [offset, offset + length) lies inside an export of `size` bytes.
    public func fits(size: UInt64) -> Bool {
        guard let e = end else { return false }
        return e <= size
    }
}

/// Parsers of option payloads. Each returns nil when the payload is
/// malformed (lengths that do not add up, strings too long, not UTF-8 or
/// containing NUL), which the server answers with NBD_REP_ERR_INVALID.
public enum NBDOptionParser {
    /// A protocol string of `length` bytes: UTF-8, no NUL, at most 4096 bytes.
    public static func readString(_ buf: inout ByteBuffer, length: Int) -> String? {
        guard length >= 0, length <= NBDLimits.maxStringLength, buf.readableBytes >= length,
              let bytes = buf.readBytes(length: length) else { return nil }
        if bytes.contains(0) { return nil }
        return String(validating: bytes, as: UTF8.self)
    }

    /// NBD_OPT_INFO / NBD_OPT_GO: u32 name length, name, u16 count, count × u16.
    public static func infoRequest(_ data: ByteBuffer) -> (name: String, requests: [UInt16])? {
        var b = data
        guard let nameLen = b.readInteger(as: UInt32.self), nameLen <= UInt32(NBDLimits.maxStringLength),
              let name = readString(&b, length: Int(nameLen)),
              let n = b.readInteger(as: UInt16.self),
              b.readableBytes == Int(n) * 2 else { return nil }
        var reqs: [UInt16] = []
        reqs.reserveCapacity(Int(n))
        for _ in 0..<n { reqs.append(b.readInteger(as: UInt16.self)!) }
        return (name, reqs)
    }

    /// NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: u32 name
    /// length, name, u32 query count, count × (u32 length, query).
    public static func metaContextRequest(_ data: ByteBuffer) -> (name: String, queries: [String])? {
        var b = data
        guard let nameLen = b.readInteger(as: UInt32.self), nameLen <= UInt32(NBDLimits.maxStringLength),
              let name = readString(&b, length: Int(nameLen)),
              let n = b.readInteger(as: UInt32.self) else { return nil }
        // Each query needs at least its 4-byte length: bounds n by the payload.
        guard UInt64(n) * 4 <= UInt64(b.readableBytes) else { return nil }
        var queries: [String] = []
        for _ in 0..<n {
            guard let ql = b.readInteger(as: UInt32.self), ql <= UInt32(NBDLimits.maxStringLength),
                  let q = readString(&b, length: Int(ql)) else { return nil }
            queries.append(q)
        }
        guard b.readableBytes == 0 else { return nil }
        return (name, queries)
    }
}

/// The metadata contexts this server knows: only `base:allocation`.
public enum NBDMetaContext {
    public static let baseAllocation = "base:allocation"
    /// The id the server assigns to base:allocation in SET_META_CONTEXT.
    public static let baseAllocationID: UInt32 = 1

    /// The contexts a query selects (`listing`: for LIST_META_CONTEXT,
    /// where the empty leaf `base:` is a wildcard). nil if the query is
    /// malformed (no namespace and colon).
    public static func match(_ query: String, listing: Bool) -> [String]? {
        guard let colon = query.firstIndex(of: ":"), colon != query.startIndex else { return nil }
        let ns = query[..<colon]
        let leaf = query[query.index(after: colon)...]
        guard ns == "base" else { return [] }  // unknown namespaces are ignored
        if leaf.isEmpty { return listing ? [baseAllocation] : [] }
        return leaf == "allocation" ? [baseAllocation] : []
    }
}

/// Encoders of what the server sends.
public enum NBDEncode {
    /// The server's opening: NBDMAGIC, IHAVEOPT, handshake flags.
    public static func greeting(_ buf: inout ByteBuffer) {
        buf.writeInteger(NBD.initMagic)
        buf.writeInteger(NBD.optMagic)
        buf.writeInteger(NBD.flagFixedNewstyle | NBD.flagNoZeroes)
    }

    /// An option reply header followed by `payloadLength` bytes the caller writes.
    public static func optionReplyHeader(_ buf: inout ByteBuffer, option: UInt32, type: UInt32, length: Int) {
        buf.writeInteger(NBD.repMagic)
        buf.writeInteger(option)
        buf.writeInteger(type)
        buf.writeInteger(UInt32(length))
    }

    public static func optionReply(_ buf: inout ByteBuffer, option: UInt32, type: UInt32, message: String = "") {
        let m = Array(message.utf8.prefix(NBDLimits.maxStringLength))
        optionReplyHeader(&buf, option: option, type: type, length: m.count)
        buf.writeBytes(m)
    }

    /// NBD_REP_SERVER: u32 name length, name, description.
    public static func serverReply(_ buf: inout ByteBuffer, name: String, description: String) {
        let n = Array(name.utf8)
        let d = Array(description.utf8.prefix(NBDLimits.maxStringLength))
        optionReplyHeader(&buf, option: NBD.optList, type: NBD.repServer, length: 4 + n.count + d.count)
        buf.writeInteger(UInt32(n.count))
        buf.writeBytes(n)
        buf.writeBytes(d)
    }

    /// NBD_REP_INFO with NBD_INFO_EXPORT: size and transmission flags.
    public static func infoExport(_ buf: inout ByteBuffer, option: UInt32, size: UInt64, flags: UInt16) {
        optionReplyHeader(&buf, option: option, type: NBD.repInfo, length: 12)
        buf.writeInteger(NBD.infoExport)
        buf.writeInteger(size)
        buf.writeInteger(flags)
    }

    /// NBD_REP_INFO with NBD_INFO_NAME or NBD_INFO_DESCRIPTION.
    public static func infoString(_ buf: inout ByteBuffer, option: UInt32, info: UInt16, _ s: String) {
        let b = Array(s.utf8.prefix(NBDLimits.maxStringLength))
        optionReplyHeader(&buf, option: option, type: NBD.repInfo, length: 2 + b.count)
        buf.writeInteger(info)
        buf.writeBytes(b)
    }

    /// NBD_REP_INFO with NBD_INFO_BLOCK_SIZE.
    public static func infoBlockSize(_ buf: inout ByteBuffer, option: UInt32, min: UInt32, preferred: UInt32, max: UInt32) {
        optionReplyHeader(&buf, option: option, type: NBD.repInfo, length: 14)
        buf.writeInteger(NBD.infoBlockSize)
        buf.writeInteger(min)
        buf.writeInteger(preferred)
        buf.writeInteger(max)
    }

    /// NBD_REP_META_CONTEXT: u32 id, name.
    public static func metaContext(_ buf: inout ByteBuffer, option: UInt32, id: UInt32, name: String) {
        let b = Array(name.utf8)
        optionReplyHeader(&buf, option: option, type: NBD.repMetaContext, length: 4 + b.count)
        buf.writeInteger(id)
        buf.writeBytes(b)
    }

    /// The reply to NBD_OPT_EXPORT_NAME: size, flags, and 124 zero bytes
    /// unless the client negotiated NO_ZEROES.
    public static func exportNameReply(_ buf: inout ByteBuffer, size: UInt64, flags: UInt16, noZeroes: Bool) {
        buf.writeInteger(size)
        buf.writeInteger(flags)
        if !noZeroes { buf.writeRepeatingByte(0, count: 124) }
    }

    /// A simple reply header (16 bytes); READ data follows on success.
    public static func simpleReply(_ buf: inout ByteBuffer, error: UInt32, handle: UInt64) {
        buf.writeInteger(NBD.simpleReplyMagic)
        buf.writeInteger(error)
        buf.writeInteger(handle)
    }

    /// A structured reply chunk header (20 bytes); `length` payload bytes follow.
    public static func structuredHeader(_ buf: inout ByteBuffer, flags: UInt16, type: UInt16, handle: UInt64, length: UInt32) {
        buf.writeInteger(NBD.structuredReplyMagic)
        buf.writeInteger(flags)
        buf.writeInteger(type)
        buf.writeInteger(handle)
        buf.writeInteger(length)
    }

    /// NBD_REPLY_TYPE_ERROR chunk with a message, flagged DONE.
    public static func structuredError(_ buf: inout ByteBuffer, handle: UInt64, error: UInt32, message: String) {
        let m = Array(message.utf8.prefix(1024))
        structuredHeader(&buf, flags: NBD.replyFlagDone, type: NBD.replyTypeError, handle: handle, length: UInt32(6 + m.count))
        buf.writeInteger(error)
        buf.writeInteger(UInt16(m.count))
        buf.writeBytes(m)
    }

    /// NBD_REPLY_TYPE_OFFSET_HOLE chunk.
    public static func hole(_ buf: inout ByteBuffer, handle: UInt64, offset: UInt64, length: UInt32, done: Bool) {
        structuredHeader(&buf, flags: done ? NBD.replyFlagDone : 0, type: NBD.replyTypeOffsetHole, handle: handle, length: 12)
        buf.writeInteger(offset)
        buf.writeInteger(length)
    }

    /// The header of an NBD_REPLY_TYPE_OFFSET_DATA chunk (with its offset);
    /// `dataLength` bytes of data follow.
    public static func dataHeader(_ buf: inout ByteBuffer, handle: UInt64, offset: UInt64, dataLength: Int, done: Bool) {
        structuredHeader(&buf, flags: done ? NBD.replyFlagDone : 0, type: NBD.replyTypeOffsetData, handle: handle,
                         length: UInt32(8 + dataLength))
        buf.writeInteger(offset)
    }

    /// NBD_REPLY_TYPE_BLOCK_STATUS chunk for one context, flagged DONE.
    public static func blockStatus(_ buf: inout ByteBuffer, handle: UInt64, contextID: UInt32, extents: [NBDExtent]) {
        structuredHeader(&buf, flags: NBD.replyFlagDone, type: NBD.replyTypeBlockStatus, handle: handle,
                         length: UInt32(4 + 8 * extents.count))
        buf.writeInteger(contextID)
        for e in extents {
            buf.writeInteger(e.length)
            buf.writeInteger(e.flags)
        }
    }
}

/// One block status descriptor.
public struct NBDExtent: Sendable, Equatable, CustomStringConvertible {
    public var length: UInt32
    public var flags: UInt32
    public init(length: UInt32, flags: UInt32) { self.length = length; self.flags = flags }
    public var description: String { "\(length):\(flags)" }
}

/// Transmission flags for an export.
public enum NBDTransmission {
    public static func flags(writable: Bool, structured: Bool) -> UInt16 {
        var f = NBD.flagHasFlags | NBD.flagSendFlush | NBD.flagSendCache
        if writable {
            // Each connection has its own overlay: writes on one are not
            // visible on another, so CAN_MULTI_CONN would be false.
            f |= NBD.flagSendFUA | NBD.flagSendTrim | NBD.flagSendWriteZeroes | NBD.flagSendFastZero
        } else {
            f |= NBD.flagReadOnly | NBD.flagCanMultiConn
        }
        if structured { f |= NBD.flagSendDF }
        return f
    }

    /// Command flags valid for each command (anything else is EINVAL).
    public static func allowedFlags(type: UInt16, structured: Bool) -> UInt16 {
        switch type {
        case NBD.cmdRead: return NBD.cmdFlagFUA | (structured ? NBD.cmdFlagDF : 0)
        case NBD.cmdWriteZeroes: return NBD.cmdFlagFUA | NBD.cmdFlagNoHole | NBD.cmdFlagFastZero
        case NBD.cmdBlockStatus: return NBD.cmdFlagFUA | NBD.cmdFlagReqOne
        default: return NBD.cmdFlagFUA
        }
    }
}
