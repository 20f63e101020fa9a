// NBDHandshakeTests: the NBD handshake's state machine (NBDHandshake), in
// process: every option's answer, the option limit, refused clients, TLS
// required and started (plaintext negotiation dropped), meta contexts.
import Foundation
import NIOCore
import XCTest
@testable import NBDServer

final class NBDHandshakeTests: XCTestCase {
    typealias A = NBDHandshake.Action
    let empty = ByteBuffer()

    func data(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

    func testClientFlags() {
        var h = NBDHandshake(tls: nil)
        XCTAssertEqual(h.clientFlags(NBD.clientFlagFixedNewstyle | NBD.clientFlagNoZeroes), [])
        XCTAssertTrue(h.noZeroes)
        var bad = NBDHandshake(tls: nil)
        XCTAssertEqual(bad.clientFlags(0x80), [.warn("unknown client flags 0x80; closing"), .close])
    }

    func testOptionsAndTheirAnswers() {
        var h = NBDHandshake(tls: nil)
        XCTAssertEqual(h.option(NBD.optList, empty), [.list])
        XCTAssertEqual(h.option(NBD.optList, data([1])),
                       [.reply(option: NBD.optList, type: NBD.repErrInvalid, message: "NBD_OPT_LIST takes no data")])
        XCTAssertEqual(h.option(NBD.optGo, data(RawClient.infoData("rev"))), [.go(name: "rev")])
        XCTAssertEqual(h.option(NBD.optInfo, data(RawClient.infoData("rev"))), [.info(name: "rev")])
        XCTAssertEqual(h.option(NBD.optInfo, data([0, 0])),
                       [.reply(option: NBD.optInfo, type: NBD.repErrInvalid, message: "malformed NBD_OPT_INFO/GO data")])
        XCTAssertEqual(h.option(NBD.optExportName, data(Array("job/rev".utf8))), [.exportName("job/rev")])
        XCTAssertEqual(h.option(NBD.optExportName, data([0xC3, 0x28])), [.warn("malformed export name; closing"), .close])
        XCTAssertEqual(h.option(NBD.optStartTLS, empty),
                       [.reply(option: NBD.optStartTLS, type: NBD.repErrUnsup, message: "TLS is not enabled on this server")])
        XCTAssertEqual(h.option(NBD.optAbort, empty), [.reply(option: NBD.optAbort, type: NBD.repAck, message: ""), .close])
        XCTAssertEqual(h.option(NBD.optExtendedHeaders, empty),
                       [.reply(option: NBD.optExtendedHeaders, type: NBD.repErrUnsup, message: "unsupported option \(NBD.optExtendedHeaders)")])
        XCTAssertEqual(h.optionTooBig(NBD.optExportName, length: 1 << 20),
                       [.warn("option \(NBD.optExportName) with 1048576 bytes of data refused"), .close])
        XCTAssertEqual(h.optionTooBig(NBD.optList, length: 99999).last,
                       .reply(option: NBD.optList, type: NBD.repErrTooBig, message: "option data too long (99999 bytes)"))
    }

    func testMetaContextsNeedStructuredRepliesAndFollowTheLastSet() {
        var h = NBDHandshake(tls: nil)
        let set = RawClient.metaData("a", ["base:allocation"])
        XCTAssertEqual(h.option(NBD.optSetMetaContext, data(set)),
                       [.reply(option: NBD.optSetMetaContext, type: NBD.repErrInvalid, message: "negotiate structured replies first")])
        XCTAssertEqual(h.option(NBD.optStructuredReply, empty), [.reply(option: NBD.optStructuredReply, type: NBD.repAck, message: "")])
        XCTAssertEqual(h.option(NBD.optListMetaContext, data(RawClient.metaData("a", []))),
                       [.metaContext(option: NBD.optListMetaContext, name: "a", contexts: ["base:allocation"], set: false)])
        XCTAssertEqual(h.option(NBD.optSetMetaContext, data(set)),
                       [.metaContext(option: NBD.optSetMetaContext, name: "a", contexts: ["base:allocation"], set: true)])
        h.metaContextSelected("a")
        XCTAssertTrue(h.metaActive(forExport: "a"))
        XCTAssertFalse(h.metaActive(forExport: "b"))
        // A later SET replaces it even if it fails.
        _ = h.optionTooBig(NBD.optSetMetaContext, length: 1 << 20)
        XCTAssertFalse(h.metaActive(forExport: "a"))
    }

    func testOptionLimit() {
        var h = NBDHandshake(tls: nil)
        for _ in 0..<NBDLimits.maxOptionsPerHandshake { XCTAssertEqual(h.option(NBD.optList, empty), [.list]) }
        XCTAssertEqual(h.option(NBD.optList, empty),
                       [.warn("more than \(NBDLimits.maxOptionsPerHandshake) options; closing"), .close])
    }

    func testARefusedClientGetsThePolicyError() {
        var h = NBDHandshake(tls: nil, refusal: "busy")
        XCTAssertEqual(h.option(NBD.optGo, data(RawClient.infoData("rev"))),
                       [.reply(option: NBD.optGo, type: NBD.repErrPolicy, message: "busy")])
        XCTAssertEqual(h.option(NBD.optAbort, empty), [.reply(option: NBD.optAbort, type: NBD.repAck, message: ""), .close])
        XCTAssertEqual(h.option(NBD.optExportName, data(Array("rev".utf8))), [.close])
    }

    func testTLSRequiredThenStartedDropsWhatWasNegotiatedInPlaintext() {
        var h = NBDHandshake(tls: .require)
        let tlsReqd = "this server requires TLS (nbds:// URIs, NBD_OPT_STARTTLS)"
        XCTAssertEqual(h.option(NBD.optStructuredReply, empty),
                       [.reply(option: NBD.optStructuredReply, type: NBD.repErrTLSReqd, message: tlsReqd)])
        XCTAssertEqual(h.option(NBD.optExportName, data(Array("rev".utf8))),
                       [.warn("plaintext NBD_OPT_EXPORT_NAME while TLS is required; closing"), .close])
        XCTAssertEqual(h.option(NBD.optStartTLS, data([0])),
                       [.reply(option: NBD.optStartTLS, type: NBD.repErrInvalid, message: "NBD_OPT_STARTTLS takes no data")])
        XCTAssertEqual(h.option(NBD.optStartTLS, empty), [.reply(option: NBD.optStartTLS, type: NBD.repAck, message: ""), .startTLS])
        h.tlsStarted()
        XCTAssertEqual(h.option(NBD.optStartTLS, empty),
                       [.reply(option: NBD.optStartTLS, type: NBD.repErrInvalid, message: "TLS is already active")])
        XCTAssertEqual(h.option(NBD.optList, empty), [.list])

        // Structured replies negotiated in plaintext do not survive STARTTLS.
        var allow = NBDHandshake(tls: .on)
        _ = allow.option(NBD.optStructuredReply, empty)
        XCTAssertTrue(allow.structured)
        _ = allow.option(NBD.optStartTLS, empty)
        allow.tlsStarted()
        XCTAssertFalse(allow.structured)
        XCTAssertTrue(allow.tlsActive)
    }
}
