// NBDDecoder: splits the client's byte stream into handshake and
// transmission messages. Memory is bounded whatever the client sends:
// option payloads over 64 KiB and WRITE payloads the server will not take
// (over 32 MiB, or on a read-only export) are skipped as they arrive instead
// of being buffered. The connection handler pauses decoding (while it works
// on an option, or when too much is in flight) through `NBDDecoderControl`;
// before buffering an accepted WRITE payload the decoder asks the handler
// for memory (`admitPayload`) and waits while it gets none. Bytes that
// follow NBD_OPT_STARTTLS in the same read cannot be trusted (they were sent
// in plaintext before the TLS handshake): they end the connection.
import NIOCore

/// State shared by the decoder and the connection handler of one channel;
/// touched only on the channel's event loop.
public final class NBDDecoderControl {
    public enum Phase: Equatable {
        /// Waiting for the client's 32-bit flags.
        case clientFlags
        /// Option haggling.
        case options
        /// Requests.
        case transmission
        /// Nothing more is decoded (closing, or after a protocol violation).
        case stopped
    }

    public var phase: Phase = .clientFlags
    /// Set by the handler while it must not receive another message.
    public var paused = false
    /// Whether WRITE payloads are accepted (a writable export); otherwise
    /// they are skipped and the request is reported with `payloadSkipped`.
    public var acceptWrites = false
    /// Asked for memory before a WRITE payload of that many bytes is
    /// buffered; false pauses decoding until the handler resumes it.
    public var admitPayload: ((Int) -> Bool)?
    /// The current WRITE payload has been admitted.
    var payloadAdmitted = false

    public init() {}
}

/// What the decoder produces.
public enum NBDInbound {
    case clientFlags(UInt32)
    /// An option with its complete payload (at most 64 KiB).
    case option(code: UInt32, data: ByteBuffer)
    /// An option whose payload was over the limit and has been skipped.
    case optionTooBig(code: UInt32, length: UInt32)
    /// A request; `payload` holds WRITE data when it was accepted.
    case request(NBDRequest, payload: ByteBuffer?)
    /// A WRITE whose payload was skipped (too big, or a read-only export).
    case requestPayloadSkipped(NBDRequest)
    /// The stream cannot be followed any more (bad magic); close.
    case violation(String)
}

/// Sits right before the decoder so that the handler can make it decode
/// what it has buffered (after a pause) without the empty read passing
/// through TLS or anything else nearer the socket.
public final class NBDDecodeKick: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    private var context: ChannelHandlerContext?

    public init() {}

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// Lets the decoder run over its buffered bytes.
    public func kick() {
        guard let context else { return }
        context.fireChannelRead(NIOAny(context.channel.allocator.buffer(capacity: 0)))
    }
}

public final class NBDDecoder: ByteToMessageDecoder {
    public typealias InboundOut = NBDInbound

    let control: NBDDecoderControl
    /// Bytes still to skip, and what to report once they are gone.
    private var skipping: (remaining: UInt64, then: NBDInbound)?

    public init(control: NBDDecoderControl) {
        self.control = control
    }

    public func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let msg = next(&buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(msg))
        return .continue
    }

    public func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A half-sent message at EOF is dropped.
        .needMoreData
    }

    /// Decodes one message from `buffer` if it is complete and the handler
    /// accepts one now. Separate from `decode` so tests can drive it.
    public func next(_ buffer: inout ByteBuffer) -> NBDInbound? {
        if var s = skipping {
            let n = Int(min(s.remaining, UInt64(buffer.readableBytes)))
            buffer.moveReaderIndex(forwardBy: n)
            s.remaining -= UInt64(n)
            if s.remaining > 0 {
                skipping = s
                return nil
            }
            skipping = nil
            return s.then
        }
        if control.paused { return nil }
        switch control.phase {
        case .stopped:
            buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            return nil
        case .clientFlags:
            guard let f = buffer.readInteger(as: UInt32.self) else { return nil }
            return .clientFlags(f)
        case .options:
            guard buffer.readableBytes >= 16 else { return nil }
            let start = buffer.readerIndex
            let magic = buffer.getInteger(at: start, as: UInt64.self)!
            let code = buffer.getInteger(at: start + 8, as: UInt32.self)!
            let length = buffer.getInteger(at: start + 12, as: UInt32.self)!
            if magic != NBD.optMagic {
                control.phase = .stopped
                return .violation("bad option magic 0x\(String(magic, radix: 16))")
            }
            if length > UInt32(NBDLimits.maxOptionLength) {
                buffer.moveReaderIndex(forwardBy: 16)
                skipping = (UInt64(length), .optionTooBig(code: code, length: length))
                return next(&buffer)
            }
            guard buffer.readableBytes >= 16 + Int(length) else { return nil }
            buffer.moveReaderIndex(forwardBy: 16)
            let data = buffer.readSlice(length: Int(length))!
            if code == NBD.optStartTLS && buffer.readableBytes > 0 {
                control.phase = .stopped
                return .violation("data sent after NBD_OPT_STARTTLS before the TLS handshake")
            }
            return .option(code: code, data: data)
        case .transmission:
            guard buffer.readableBytes >= NBDRequest.size else { return nil }
            let start = buffer.readerIndex
            let type = buffer.getInteger(at: start + 6, as: UInt16.self)!
            let length = buffer.getInteger(at: start + 24, as: UInt32.self)!
            if type == NBD.cmdWrite {
                let take = control.acceptWrites && Int(length) <= NBDLimits.maxRequest
                if take && !control.payloadAdmitted {
                    if let admit = control.admitPayload, !admit(Int(length)) {
                        control.paused = true
                        return nil
                    }
                    control.payloadAdmitted = true
                }
                if take {
                    guard buffer.readableBytes >= NBDRequest.size + Int(length) else { return nil }
                }
                let (req, ok) = NBDRequest.read(from: &buffer)!
                if !ok {
                    control.phase = .stopped
                    return .violation("bad request magic")
                }
                if take {
                    control.payloadAdmitted = false
                    return .request(req, payload: buffer.readSlice(length: Int(length))!)
                }
                skipping = (UInt64(length), .requestPayloadSkipped(req))
                return next(&buffer)
            }
            let (req, ok) = NBDRequest.read(from: &buffer)!
            if !ok {
                control.phase = .stopped
                return .violation("bad request magic")
            }
            return .request(req, payload: nil)
        }
    }
}
