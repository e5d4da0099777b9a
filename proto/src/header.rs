//! The 16-byte header in front of every Nebula datagram: field offsets, message types, a parsed repr.
//! Parsing copies the fields out; encoding writes exactly 16 bytes into the caller's buffer, never allocating.

use core::fmt;

/// Length of the header on the wire.
pub const HEADER_LEN: usize = 16;

/// The only header version any Nebula release writes (byte 0 = `0x1T`).
pub const VERSION: u8 = 1;

/// Byte offsets of the header fields (all multi-byte fields big-endian).
pub mod field {
    /// A byte range inside the header.
    pub type Field = core::ops::Range<usize>;

    /// Version in the high nibble, message type in the low nibble.
    pub const VERSION_TYPE: usize = 0;
    /// Message subtype.
    pub const SUBTYPE: usize = 1;
    /// Reserved, written as zero, ignored on read.
    pub const RESERVED: Field = 2..4;
    /// The receiver's local index (u32).
    pub const REMOTE_INDEX: Field = 4..8;
    /// Message counter, also the AEAD nonce value (u64).
    pub const MESSAGE_COUNTER: Field = 8..16;
    /// First byte after the header.
    pub const PAYLOAD: usize = super::HEADER_LEN;
}

/// Subtype values, named per message type.
pub mod subtype {
    /// Subtype 0 of types that have no other subtype (recvError, lightHouse, closeTunnel, control).
    pub const NONE: u8 = 0;
    /// Handshake: Noise IX (the name says psk0, but no PSK is used).
    pub const HANDSHAKE_IX_PSK0: u8 = 0;
    /// Handshake: defined upstream but never implemented; not a valid subtype.
    pub const HANDSHAKE_XX_PSK0: u8 = 1;
    /// Message: a tunnelled IP packet.
    pub const MESSAGE_NONE: u8 = 0;
    /// Message: a relay frame (header and inner packet authenticated, nothing encrypted).
    pub const MESSAGE_RELAY: u8 = 1;
    /// Test: a request to be echoed.
    pub const TEST_REQUEST: u8 = 0;
    /// Test: the echo.
    pub const TEST_REPLY: u8 = 1;
}

/// The message type in the low nibble of byte 0.
///
/// Values with no name are kept as `Unknown(value)` so a header always round-trips.
/// `Unknown` is only produced for values that have no named variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 0: Noise handshake messages.
    Handshake,
    /// 1: tunnelled IP packets and relay frames.
    Message,
    /// 2: "I do not know this index", unencrypted, header only.
    RecvError,
    /// 3: lighthouse protocol (`NebulaMeta`).
    LightHouse,
    /// 4: connection test request/reply.
    Test,
    /// 5: tunnel teardown, empty plaintext.
    CloseTunnel,
    /// 6: relay control (`NebulaControl`).
    Control,
    /// Any other value.
    Unknown(u8),
}

impl MessageType {
    /// The name Go Nebula logs for this type ("unknown" for unnamed values).
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Handshake => "handshake",
            MessageType::Message => "message",
            MessageType::RecvError => "recvError",
            MessageType::LightHouse => "lightHouse",
            MessageType::Test => "test",
            MessageType::CloseTunnel => "closeTunnel",
            MessageType::Control => "control",
            MessageType::Unknown(_) => "unknown",
        }
    }
}

impl From<u8> for MessageType {
    fn from(value: u8) -> Self {
        match value {
            0 => MessageType::Handshake,
            1 => MessageType::Message,
            2 => MessageType::RecvError,
            3 => MessageType::LightHouse,
            4 => MessageType::Test,
            5 => MessageType::CloseTunnel,
            6 => MessageType::Control,
            other => MessageType::Unknown(other),
        }
    }
}

impl From<MessageType> for u8 {
    fn from(value: MessageType) -> Self {
        match value {
            MessageType::Handshake => 0,
            MessageType::Message => 1,
            MessageType::RecvError => 2,
            MessageType::LightHouse => 3,
            MessageType::Test => 4,
            MessageType::CloseTunnel => 5,
            MessageType::Control => 6,
            MessageType::Unknown(other) => other,
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `(msg_type, subtype)` is a pair Nebula 1.11 accepts (its `IsValidSubType`).
/// 1.6.1 does not check this.
pub fn is_valid_subtype(msg_type: MessageType, subtype: u8) -> bool {
    subtype_name(msg_type, subtype).is_some()
}

/// The name Go Nebula gives a subtype of a type, `None` when the pair is not defined.
pub fn subtype_name(msg_type: MessageType, subtype: u8) -> Option<&'static str> {
    match (msg_type, subtype) {
        (MessageType::Handshake, subtype::HANDSHAKE_IX_PSK0) => Some("ix_psk0"),
        (MessageType::Message, subtype::MESSAGE_NONE) => Some("none"),
        (MessageType::Message, subtype::MESSAGE_RELAY) => Some("relay"),
        (MessageType::Test, subtype::TEST_REQUEST) => Some("testRequest"),
        (MessageType::Test, subtype::TEST_REPLY) => Some("testReply"),
        (
            MessageType::RecvError
            | MessageType::LightHouse
            | MessageType::CloseTunnel
            | MessageType::Control,
            subtype::NONE,
        ) => Some("none"),
        _ => None,
    }
}

/// Why a header could not be parsed, written or accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The datagram is shorter than 16 bytes (hole-punch packets are 1 byte); drop it silently.
    #[error("datagram of {len} bytes is shorter than the 16-byte header")]
    TooShort {
        /// Length of the input.
        len: usize,
    },
    /// The output buffer given to `encode` cannot hold 16 bytes: a caller bug.
    #[error("output buffer of {len} bytes cannot hold the 16-byte header")]
    BufferTooSmall {
        /// Length of the output buffer.
        len: usize,
    },
    /// `encode` was asked to write a version that does not fit in 4 bits: a caller bug.
    #[error("header version {0} does not fit in 4 bits")]
    VersionOutOfRange(u8),
    /// `encode` was asked to write a type that does not fit in 4 bits: a caller bug.
    #[error("message type {0} does not fit in 4 bits")]
    TypeOutOfRange(u8),
    /// Strict (1.11) check: the peer sent a version other than 1.
    #[error("unsupported header version {0}")]
    UnsupportedVersion(u8),
    /// Strict (1.11) check: the peer sent a (type, subtype) pair Nebula does not define.
    #[error("subtype {subtype} is not valid for message type {msg_type}")]
    InvalidSubtype {
        /// The message type from the header.
        msg_type: MessageType,
        /// The subtype from the header.
        subtype: u8,
    },
}

/// A parsed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// High nibble of byte 0; always [`VERSION`] from real senders.
    pub version: u8,
    /// Low nibble of byte 0.
    pub msg_type: MessageType,
    /// Byte 1; meaning depends on `msg_type` (see [`subtype`]).
    pub subtype: u8,
    /// Bytes 2-3; Go always writes 0 and never reads it.
    pub reserved: u16,
    /// The receiver's local index (0 in handshake stage 1).
    pub remote_index: u32,
    /// Per-tunnel counter; also the AEAD nonce value.
    pub message_counter: u64,
}

impl Header {
    /// A version-1 header with the reserved field zero.
    pub const fn new(
        msg_type: MessageType,
        subtype: u8,
        remote_index: u32,
        message_counter: u64,
    ) -> Header {
        Header {
            version: VERSION,
            msg_type,
            subtype,
            reserved: 0,
            remote_index,
            message_counter,
        }
    }

    /// Reads the first 16 bytes of `buf` (what follows is the payload). Accepts any version,
    /// type and subtype, as 1.6.1 does; see [`Header::check_strict`] for 1.11's checks.
    pub fn parse(buf: &[u8]) -> Result<Header, HeaderError> {
        let bytes: &[u8; HEADER_LEN] = buf
            .first_chunk()
            .ok_or(HeaderError::TooShort { len: buf.len() })?;
        Ok(Header::from_bytes(bytes))
    }

    /// [`Header::parse`] plus the payload that follows the header.
    pub fn parse_split(buf: &[u8]) -> Result<(Header, &[u8]), HeaderError> {
        let (bytes, payload) = buf
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(HeaderError::TooShort { len: buf.len() })?;
        Ok((Header::from_bytes(bytes), payload))
    }

    /// [`Header::parse`] followed by [`Header::check_strict`] (what 1.11 does on receive).
    pub fn parse_strict(buf: &[u8]) -> Result<Header, HeaderError> {
        let header = Header::parse(buf)?;
        header.check_strict()?;
        Ok(header)
    }

    /// Decodes a full 16-byte header; cannot fail.
    pub fn from_bytes(bytes: &[u8; HEADER_LEN]) -> Header {
        let [b0, b1, r0, r1, i0, i1, i2, i3, c0, c1, c2, c3, c4, c5, c6, c7] = *bytes;
        Header {
            version: b0 >> 4,
            msg_type: MessageType::from(b0 & 0x0f),
            subtype: b1,
            reserved: u16::from_be_bytes([r0, r1]),
            remote_index: u32::from_be_bytes([i0, i1, i2, i3]),
            message_counter: u64::from_be_bytes([c0, c1, c2, c3, c4, c5, c6, c7]),
        }
    }

    /// Writes the header into the first 16 bytes of `out` (bytes after that are untouched).
    /// Fails if `out` is shorter than 16 bytes or the version or type does not fit in 4 bits.
    /// The reserved field is written as stored (0 for headers made by [`Header::new`]).
    pub fn encode(&self, out: &mut [u8]) -> Result<(), HeaderError> {
        let len = out.len();
        let dst: &mut [u8; HEADER_LEN] = out
            .first_chunk_mut()
            .ok_or(HeaderError::BufferTooSmall { len })?;
        if self.version > 0x0f {
            return Err(HeaderError::VersionOutOfRange(self.version));
        }
        let msg_type = u8::from(self.msg_type);
        if msg_type > 0x0f {
            return Err(HeaderError::TypeOutOfRange(msg_type));
        }
        *dst = self.to_bytes();
        Ok(())
    }

    /// The 16 wire bytes. Like Go, only the low 4 bits of version and type are kept;
    /// use [`Header::encode`] to have out-of-range values refused instead.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[field::VERSION_TYPE] = (self.version << 4) | (u8::from(self.msg_type) & 0x0f);
        out[field::SUBTYPE] = self.subtype;
        out[field::RESERVED].copy_from_slice(&self.reserved.to_be_bytes());
        out[field::REMOTE_INDEX].copy_from_slice(&self.remote_index.to_be_bytes());
        out[field::MESSAGE_COUNTER].copy_from_slice(&self.message_counter.to_be_bytes());
        out
    }

    /// 1.11 check: the version nibble must be [`VERSION`].
    pub fn check_version(&self) -> Result<(), HeaderError> {
        if self.version == VERSION {
            Ok(())
        } else {
            Err(HeaderError::UnsupportedVersion(self.version))
        }
    }

    /// 1.11 check: (type, subtype) must be a defined pair.
    pub fn check_subtype(&self) -> Result<(), HeaderError> {
        if self.is_valid_subtype() {
            Ok(())
        } else {
            Err(HeaderError::InvalidSubtype {
                msg_type: self.msg_type,
                subtype: self.subtype,
            })
        }
    }

    /// Both 1.11 receive checks: version, then subtype.
    pub fn check_strict(&self) -> Result<(), HeaderError> {
        self.check_version()?;
        self.check_subtype()
    }

    /// See [`is_valid_subtype`].
    pub fn is_valid_subtype(&self) -> bool {
        is_valid_subtype(self.msg_type, self.subtype)
    }

    /// Go's name for this header's subtype ("unknown" if undefined).
    pub fn subtype_name(&self) -> &'static str {
        subtype_name(self.msg_type, self.subtype).unwrap_or("unknown")
    }
}

impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ver={} type={} subtype={} reserved={:#x} remoteindex={} messagecounter={}",
            self.version,
            self.msg_type,
            self.subtype_name(),
            self.reserved,
            self.remote_index,
            self.message_counter
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `header/header_test.go @ v1.6.1`: version 5, type 4, index 10, counter 9.
    const UPSTREAM_VECTOR: [u8; 16] = [
        0x54, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x09,
    ];

    fn upstream_header() -> Header {
        Header {
            version: 5,
            msg_type: MessageType::Test,
            subtype: 0,
            reserved: 0,
            remote_index: 10,
            message_counter: 9,
        }
    }

    #[test]
    fn upstream_vector_encodes() {
        let mut out = [0xffu8; 16];
        upstream_header().encode(&mut out).unwrap();
        assert_eq!(out, UPSTREAM_VECTOR);
        assert_eq!(upstream_header().to_bytes(), UPSTREAM_VECTOR);
    }

    #[test]
    fn upstream_vector_parses() {
        assert_eq!(Header::parse(&UPSTREAM_VECTOR).unwrap(), upstream_header());
    }

    #[test]
    fn stage_one_handshake_header_bytes() {
        // Observed on the wire (PROTOCOL.md §2.1): 10 00 0000 00000000 0000000000000001.
        let h = Header::new(MessageType::Handshake, subtype::HANDSHAKE_IX_PSK0, 0, 1);
        assert_eq!(
            h.to_bytes(),
            [0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert!(h.check_strict().is_ok());
    }

    #[test]
    fn short_input_is_an_error_at_every_length() {
        for len in 0..HEADER_LEN {
            let buf = vec![0x10u8; len];
            assert_eq!(Header::parse(&buf), Err(HeaderError::TooShort { len }));
            assert!(Header::parse_split(&buf).is_err());
            assert!(Header::parse_strict(&buf).is_err());
        }
    }

    #[test]
    fn parse_split_returns_payload() {
        let mut buf = UPSTREAM_VECTOR.to_vec();
        buf.extend_from_slice(b"payload");
        let (h, payload) = Header::parse_split(&buf).unwrap();
        assert_eq!(h, upstream_header());
        assert_eq!(payload, b"payload");
        let (_, empty) = Header::parse_split(&UPSTREAM_VECTOR).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn encode_writes_only_sixteen_bytes() {
        let mut out = [0xaau8; 20];
        let h = Header::new(MessageType::Message, subtype::MESSAGE_RELAY, 0xdeadbeef, 3);
        h.encode(&mut out).unwrap();
        assert_eq!(&out[16..], &[0xaa; 4]);
        assert_eq!(Header::parse(&out).unwrap(), h);
    }

    #[test]
    fn encode_refuses_small_buffer_and_wide_nibbles() {
        let h = Header::new(MessageType::Message, 0, 1, 1);
        assert_eq!(
            h.encode(&mut [0u8; 15]),
            Err(HeaderError::BufferTooSmall { len: 15 })
        );
        let wide_version = Header { version: 16, ..h };
        assert_eq!(
            wide_version.encode(&mut [0u8; 16]),
            Err(HeaderError::VersionOutOfRange(16))
        );
        let wide_type = Header {
            msg_type: MessageType::Unknown(0x20),
            ..h
        };
        assert_eq!(
            wide_type.encode(&mut [0u8; 16]),
            Err(HeaderError::TypeOutOfRange(0x20))
        );
        // to_bytes keeps the low nibbles, as Go does.
        assert_eq!(wide_version.to_bytes()[0], 0x01);
    }

    #[test]
    fn every_first_byte_round_trips() {
        for b0 in 0..=255u8 {
            for b1 in [0u8, 1, 2, 0xff] {
                let mut bytes = UPSTREAM_VECTOR;
                bytes[0] = b0;
                bytes[1] = b1;
                bytes[2] = 0x12;
                bytes[3] = 0x34;
                let h = Header::parse(&bytes).unwrap();
                assert_eq!(h.reserved, 0x1234);
                let mut out = [0u8; 16];
                h.encode(&mut out).unwrap();
                assert_eq!(out, bytes);
            }
        }
    }

    #[test]
    fn message_type_values() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(MessageType::from(v)), v);
        }
        assert_eq!(MessageType::from(0), MessageType::Handshake);
        assert_eq!(MessageType::from(6), MessageType::Control);
        assert_eq!(MessageType::from(7), MessageType::Unknown(7));
        assert_eq!(MessageType::Test.name(), "test");
        assert_eq!(MessageType::Unknown(99).name(), "unknown");
    }

    #[test]
    fn valid_subtypes_match_upstream_table() {
        use MessageType::*;
        let valid = [
            (Handshake, 0),
            (Message, 0),
            (Message, 1),
            (RecvError, 0),
            (LightHouse, 0),
            (Test, 0),
            (Test, 1),
            (CloseTunnel, 0),
            (Control, 0),
        ];
        for t in 0..=15u8 {
            for s in 0..=255u8 {
                let t = MessageType::from(t);
                assert_eq!(is_valid_subtype(t, s), valid.contains(&(t, s)), "{t} {s}");
            }
        }
        assert!(!is_valid_subtype(Handshake, subtype::HANDSHAKE_XX_PSK0));
    }

    #[test]
    fn strict_checks() {
        let ok = Header::new(MessageType::Test, subtype::TEST_REPLY, 7, 8);
        assert_eq!(ok.check_strict(), Ok(()));
        let bad_version = Header { version: 2, ..ok };
        assert_eq!(
            bad_version.check_strict(),
            Err(HeaderError::UnsupportedVersion(2))
        );
        assert_eq!(bad_version.check_subtype(), Ok(()));
        let bad_subtype = Header { subtype: 2, ..ok };
        assert_eq!(
            bad_subtype.check_strict(),
            Err(HeaderError::InvalidSubtype {
                msg_type: MessageType::Test,
                subtype: 2
            })
        );
        assert_eq!(bad_subtype.check_version(), Ok(()));
        assert_eq!(
            Header::parse_strict(&UPSTREAM_VECTOR),
            Err(HeaderError::UnsupportedVersion(5))
        );
    }

    #[test]
    fn display_matches_go_layout() {
        let h = Header::new(MessageType::Test, subtype::TEST_REQUEST, 10, 9);
        assert_eq!(
            h.to_string(),
            "ver=1 type=test subtype=testRequest reserved=0x0 remoteindex=10 messagecounter=9"
        );
        let odd = Header::new(MessageType::Unknown(9), 3, 0, 0);
        assert!(odd.to_string().contains("type=unknown subtype=unknown"));
    }
}
