//! A small protobuf wire-format reader for the hand-written strict decoders.
//! Follows the protobuf encoding rules as Go's `protowire` applies them; holds no message knowledge.

/// Protobuf wire type numbers.
pub mod wire_type {
    /// Variable-length integer.
    pub const VARINT: u8 = 0;
    /// Eight little-endian bytes.
    pub const FIXED64: u8 = 1;
    /// Length-prefixed bytes (strings, bytes, embedded messages, packed repeated fields).
    pub const LEN: u8 = 2;
    /// Start of a (deprecated) group.
    pub const START_GROUP: u8 = 3;
    /// End of a (deprecated) group.
    pub const END_GROUP: u8 = 4;
    /// Four little-endian bytes.
    pub const FIXED32: u8 = 5;
}

/// Nesting limit for groups while skipping unknown fields (Go's default recursion limit).
const MAX_GROUP_DEPTH: usize = 10_000;

/// Why the raw protobuf framing could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ends inside a tag, a varint, a fixed-size value or a length-delimited field.
    #[error("protobuf field is truncated")]
    Truncated,
    /// A varint runs past 64 bits.
    #[error("protobuf varint overflows 64 bits")]
    VarintOverflow,
    /// A tag carries field number 0 or one too large for a protobuf field.
    #[error("invalid protobuf field number")]
    InvalidFieldNumber,
    /// Wire type 6 or 7, which protobuf does not define.
    #[error("reserved protobuf wire type {0}")]
    ReservedWireType(u8),
    /// An end-group marker with no matching start, or for another field.
    #[error("mismatched protobuf end-group marker")]
    EndGroupMismatch,
    /// Groups nested deeper than 10000 levels.
    #[error("protobuf groups nested too deeply")]
    RecursionLimit,
}

/// A cursor over protobuf-encoded bytes.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Reads a varint of at most 10 bytes; the 10th byte may only hold the top bit of a u64.
    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for i in 0..10usize {
            let (&byte, rest) = self.buf.split_first().ok_or(WireError::Truncated)?;
            self.buf = rest;
            if i == 9 && byte > 1 {
                return Err(WireError::VarintOverflow);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(WireError::VarintOverflow)
    }

    /// Reads a tag: (field number, wire type). Field numbers run from 1 to 2^31-1, as Go accepts.
    pub(crate) fn tag(&mut self) -> Result<(u32, u8), WireError> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|n| (1..=0x7fff_ffff).contains(n))
            .ok_or(WireError::InvalidFieldNumber)?;
        // The mask keeps 3 bits, so the value always fits.
        let wire_type = (key & 7) as u8;
        Ok((number, wire_type))
    }

    /// Reads a length-prefixed value.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
        if len > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let (value, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(value)
    }

    fn advance(&mut self, n: usize) -> Result<(), WireError> {
        if n > self.buf.len() {
            return Err(WireError::Truncated);
        }
        self.buf = self.buf.get(n..).unwrap_or_default();
        Ok(())
    }

    /// Skips the value of a field whose tag has just been read, including whole groups.
    pub(crate) fn skip_value(&mut self, number: u32, wire_type: u8) -> Result<(), WireError> {
        match wire_type {
            wire_type::VARINT => self.varint().map(|_| ()),
            wire_type::FIXED64 => self.advance(8),
            wire_type::LEN => self.bytes().map(|_| ()),
            wire_type::FIXED32 => self.advance(4),
            wire_type::START_GROUP => self.skip_group(number),
            wire_type::END_GROUP => Err(WireError::EndGroupMismatch),
            other => Err(WireError::ReservedWireType(other)),
        }
    }

    /// Skips to the end-group marker that closes the group opened by field `number`.
    fn skip_group(&mut self, number: u32) -> Result<(), WireError> {
        let mut open = vec![number];
        while let Some(&innermost) = open.last() {
            let (n, wt) = self.tag()?;
            match wt {
                wire_type::END_GROUP => {
                    if n != innermost {
                        return Err(WireError::EndGroupMismatch);
                    }
                    open.pop();
                }
                wire_type::START_GROUP => {
                    if open.len() > MAX_GROUP_DEPTH {
                        return Err(WireError::RecursionLimit);
                    }
                    open.push(n);
                }
                other => self.skip_value(n, other)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        assert_eq!(Reader::new(&[0x00]).varint(), Ok(0));
        assert_eq!(Reader::new(&[0xac, 0x02]).varint(), Ok(300));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&max).varint(), Ok(u64::MAX));
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(Reader::new(&over).varint(), Err(WireError::VarintOverflow));
        let long = [0x80; 11];
        assert_eq!(Reader::new(&long).varint(), Err(WireError::VarintOverflow));
        assert_eq!(Reader::new(&[0x80]).varint(), Err(WireError::Truncated));
        assert_eq!(Reader::new(&[]).varint(), Err(WireError::Truncated));
    }

    #[test]
    fn tags() {
        assert_eq!(Reader::new(&[0x0a]).tag(), Ok((1, wire_type::LEN)));
        assert_eq!(Reader::new(&[0x40]).tag(), Ok((8, wire_type::VARINT)));
        assert_eq!(
            Reader::new(&[0x02]).tag(),
            Err(WireError::InvalidFieldNumber)
        );
        // 2^31 as a field number is past what Go accepts.
        let big = [0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert_eq!(Reader::new(&big).tag(), Err(WireError::InvalidFieldNumber));
    }

    #[test]
    fn skipping() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        r.skip_value(1, wire_type::FIXED64).unwrap();
        assert!(!r.is_empty());
        assert_eq!(
            Reader::new(&[1, 2, 3]).skip_value(1, wire_type::FIXED32),
            Err(WireError::Truncated)
        );
        assert_eq!(
            Reader::new(&[0x05, 1]).skip_value(1, wire_type::LEN),
            Err(WireError::Truncated)
        );
        assert_eq!(
            Reader::new(&[]).skip_value(1, 6),
            Err(WireError::ReservedWireType(6))
        );
        assert_eq!(
            Reader::new(&[]).skip_value(1, wire_type::END_GROUP),
            Err(WireError::EndGroupMismatch)
        );
    }

    #[test]
    fn groups() {
        // group 1 { field 2 varint 5; group 3 { } } end 1
        let ok = [0x10, 0x05, 0x1b, 0x1c, 0x0c];
        let mut r = Reader::new(&ok);
        r.skip_value(1, wire_type::START_GROUP).unwrap();
        assert!(r.is_empty());
        // end marker for the wrong field
        assert_eq!(
            Reader::new(&[0x14]).skip_value(1, wire_type::START_GROUP),
            Err(WireError::EndGroupMismatch)
        );
        // never closed
        assert_eq!(
            Reader::new(&[0x10, 0x05]).skip_value(1, wire_type::START_GROUP),
            Err(WireError::Truncated)
        );
        // absurd nesting
        let deep = vec![0x0b; MAX_GROUP_DEPTH + 5];
        assert_eq!(
            Reader::new(&deep).skip_value(1, wire_type::START_GROUP),
            Err(WireError::RecursionLimit)
        );
    }
}
