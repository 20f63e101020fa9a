// NBDConstants: the numbers of the NBD protocol (NetworkBlockDevice/nbd
// doc/proto.md): magics, handshake flags, options, replies, info types,
// commands, command flags, transmission flags and error values.

public enum NBD {
    // Handshake
    public static let initMagic: UInt64 = 0x4e42_444d_4147_4943      // "NBDMAGIC"
    public static let optMagic: UInt64 = 0x4948_4156_454f_5054       // "IHAVEOPT"
    public static let repMagic: UInt64 = 0x0003_e889_0455_65a9
    public static let flagFixedNewstyle: UInt16 = 1 << 0
    public static let flagNoZeroes: UInt16 = 1 << 1
    public static let clientFlagFixedNewstyle: UInt32 = 1 << 0
    public static let clientFlagNoZeroes: UInt32 = 1 << 1

    // Options
    public static let optExportName: UInt32 = 1
    public static let optAbort: UInt32 = 2
    public static let optList: UInt32 = 3
    public static let optStartTLS: UInt32 = 5
    public static let optInfo: UInt32 = 6
    public static let optGo: UInt32 = 7
    public static let optStructuredReply: UInt32 = 8
    public static let optListMetaContext: UInt32 = 9
    public static let optSetMetaContext: UInt32 = 10
    public static let optExtendedHeaders: UInt32 = 11

    // Option replies
    public static let repAck: UInt32 = 1
    public static let repServer: UInt32 = 2
    public static let repInfo: UInt32 = 3
    public static let repMetaContext: UInt32 = 4
    public static let repErrUnsup: UInt32 = 0x8000_0001
    public static let repErrPolicy: UInt32 = 0x8000_0002
    public static let repErrInvalid: UInt32 = 0x8000_0003
    public static let repErrPlatform: UInt32 = 0x8000_0004
    public static let repErrTLSReqd: UInt32 = 0x8000_0005
    public static let repErrUnknown: UInt32 = 0x8000_0006
    public static let repErrShutdown: UInt32 = 0x8000_0007
    public static let repErrBlockSizeReqd: UInt32 = 0x8000_0008
    public static let repErrTooBig: UInt32 = 0x8000_0009

    // Info types (OPT_INFO / OPT_GO)
    public static let infoExport: UInt16 = 0
    public static let infoName: UInt16 = 1
    public static let infoDescription: UInt16 = 2
    public static let infoBlockSize: UInt16 = 3

    // Transmission flags
    public static let flagHasFlags: UInt16 = 1 << 0
    public static let flagReadOnly: UInt16 = 1 << 1
    public static let flagSendFlush: UInt16 = 1 << 2
    public static let flagSendFUA: UInt16 = 1 << 3
    public static let flagRotational: UInt16 = 1 << 4
    public static let flagSendTrim: UInt16 = 1 << 5
    public static let flagSendWriteZeroes: UInt16 = 1 << 6
    public static let flagSendDF: UInt16 = 1 << 7
    public static let flagCanMultiConn: UInt16 = 1 << 8
    public static let flagSendResize: UInt16 = 1 << 9
    public static let flagSendCache: UInt16 = 1 << 10
    public static let flagSendFastZero: UInt16 = 1 << 11
    public static let flagBlockStatusPayload: UInt16 = 1 << 12

    // Transmission
    public static let requestMagic: UInt32 = 0x2560_9513
    public static let simpleReplyMagic: UInt32 = 0x6744_6698
    public static let structuredReplyMagic: UInt32 = 0x668e_33ef

    public static let cmdRead: UInt16 = 0
    public static let cmdWrite: UInt16 = 1
    public static let cmdDisc: UInt16 = 2
    public static let cmdFlush: UInt16 = 3
    public static let cmdTrim: UInt16 = 4
    public static let cmdCache: UInt16 = 5
    public static let cmdWriteZeroes: UInt16 = 6
    public static let cmdBlockStatus: UInt16 = 7
    public static let cmdResize: UInt16 = 8

    public static let cmdFlagFUA: UInt16 = 1 << 0
    public static let cmdFlagNoHole: UInt16 = 1 << 1
    public static let cmdFlagDF: UInt16 = 1 << 2
    public static let cmdFlagReqOne: UInt16 = 1 << 3
    public static let cmdFlagFastZero: UInt16 = 1 << 4

    // Structured reply chunk types
    public static let replyFlagDone: UInt16 = 1 << 0
    public static let replyTypeNone: UInt16 = 0
    public static let replyTypeOffsetData: UInt16 = 1
    public static let replyTypeOffsetHole: UInt16 = 2
    public static let replyTypeBlockStatus: UInt16 = 5
    public static let replyTypeError: UInt16 = 32769
    public static let replyTypeErrorOffset: UInt16 = 32770

    // base:allocation flags
    public static let stateHole: UInt32 = 1 << 0
    public static let stateZero: UInt32 = 1 << 1

    // Errors
    public static let EPERM: UInt32 = 1
    public static let EIO: UInt32 = 5
    public static let ENOMEM: UInt32 = 12
    public static let EINVAL: UInt32 = 22
    public static let ENOSPC: UInt32 = 28
    public static let EOVERFLOW: UInt32 = 75
    public static let ENOTSUP: UInt32 = 95
    public static let ESHUTDOWN: UInt32 = 108
}
