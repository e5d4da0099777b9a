//! Strict ASN.1 DER primitives with the semantics of Go's `golang.org/x/crypto/cryptobyte`.
//! Owns the TLV reader and writer and INTEGER helpers that the v2 codec and ECDSA signatures share.

/// Universal tags (class universal; SEQUENCE constructed).
pub const TAG_INTEGER: u8 = 0x02;
pub const TAG_OCTET_STRING: u8 = 0x04;
pub const TAG_UTF8_STRING: u8 = 0x0c;
pub const TAG_SEQUENCE: u8 = 0x30;

/// Why an element could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerError {
    /// The input ends inside the element.
    Truncated,
    /// The element is malformed or has another tag than expected.
    Malformed(&'static str),
}

/// A cursor over DER bytes.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

/// One element: its tag, its content, and the whole TLV (header included).
#[derive(Debug, Clone, Copy)]
pub struct Element<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub whole: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    /// The next tag byte, if any.
    pub fn peek_tag(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// Read the next element of any tag. Lengths must be DER-minimal; at most 4 length bytes;
    /// high tag numbers (tag & 0x1f == 0x1f) and the indefinite form are refused.
    pub fn read_element(&mut self) -> Result<Element<'a>, DerError> {
        let (&tag, rest) = self.buf.split_first().ok_or(DerError::Truncated)?;
        let (&len_byte, rest) = rest.split_first().ok_or(DerError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::Malformed("high tag number form is not supported"));
        }
        let (len, header) = if len_byte & 0x80 == 0 {
            (usize::from(len_byte), 2usize)
        } else {
            let n = usize::from(len_byte & 0x7f);
            if n == 0 {
                return Err(DerError::Malformed("indefinite length"));
            }
            if n > 4 {
                return Err(DerError::Malformed("length field longer than 4 bytes"));
            }
            let len_bytes = rest.get(..n).ok_or(DerError::Truncated)?;
            let mut len: u32 = 0;
            for &b in len_bytes {
                len = (len << 8) | u32::from(b);
            }
            if len < 128 {
                return Err(DerError::Malformed(
                    "non-minimal length (short form required)",
                ));
            }
            if len_bytes.first() == Some(&0) {
                return Err(DerError::Malformed("non-minimal length (leading zero)"));
            }
            let len = usize::try_from(len).map_err(|_| DerError::Malformed("length too big"))?;
            (len, 2 + n)
        };
        let total = header
            .checked_add(len)
            .ok_or(DerError::Malformed("length overflow"))?;
        let whole = self.buf.get(..total).ok_or(DerError::Truncated)?;
        let content = whole.get(header..).ok_or(DerError::Truncated)?;
        self.buf = self.buf.get(total..).ok_or(DerError::Truncated)?;
        Ok(Element {
            tag,
            content,
            whole,
        })
    }

    /// Read an element that must carry `tag` (cryptobyte `ReadASN1Element`).
    pub fn read_element_expect(&mut self, tag: u8) -> Result<Element<'a>, DerError> {
        let mut probe = *self;
        let el = probe.read_element()?;
        if el.tag != tag {
            return Err(DerError::Malformed("unexpected tag"));
        }
        *self = probe;
        Ok(el)
    }

    /// Read an element that must carry `tag` and return its content (cryptobyte `ReadASN1`).
    pub fn read_expect(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        self.read_element_expect(tag).map(|e| e.content)
    }

    /// If the next tag is `tag`, read that element's content (cryptobyte `ReadOptionalASN1`).
    pub fn read_optional(&mut self, tag: u8) -> Result<Option<&'a [u8]>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.read_expect(tag).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Read a DER INTEGER with a context tag into an i64 (cryptobyte `ReadASN1Int64WithTag`).
    pub fn read_i64_with_tag(&mut self, tag: u8) -> Result<i64, DerError> {
        let v = self.read_expect(tag)?;
        decode_i64(v).ok_or(DerError::Malformed("invalid integer"))
    }
}

/// Whether INTEGER content is present and minimally encoded (two's complement).
pub fn is_minimal_integer(v: &[u8]) -> bool {
    match v {
        [] => false,
        [_] => true,
        [0x00, b, ..] => b & 0x80 != 0,
        [0xff, b, ..] => b & 0x80 == 0,
        _ => true,
    }
}

/// Decode minimal two's-complement INTEGER content of at most 8 bytes.
pub fn decode_i64(v: &[u8]) -> Option<i64> {
    if !is_minimal_integer(v) || v.len() > 8 {
        return None;
    }
    let first = *v.first()?;
    let mut out: i64 = if first & 0x80 != 0 { -1 } else { 0 };
    for &b in v {
        out = (out << 8) | i64::from(b);
    }
    Some(out)
}

/// Minimal two's-complement encoding of `v`.
pub fn encode_i64(v: i64) -> Vec<u8> {
    let mut len = 1usize;
    let mut i = v;
    while !(-0x80..0x80).contains(&i) {
        len += 1;
        i >>= 8;
    }
    (0..len).rev().map(|k| (v >> (k * 8)) as u8).collect()
}

/// Append the DER length of `len`.
pub fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let used = bytes.get(skip..).unwrap_or(&[]);
        out.push(0x80 | used.len() as u8);
        out.extend_from_slice(used);
    }
}

/// Append one TLV.
pub fn push_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    push_len(out, content.len());
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_encoding_is_minimal() {
        for (v, h) in [
            (0i64, "00"),
            (127, "7f"),
            (128, "0080"),
            (255, "00ff"),
            (256, "0100"),
            (-1, "ff"),
            (-128, "80"),
            (-129, "ff7f"),
            (831_254_400, "318bef80"),
            (i64::MAX, "7fffffffffffffff"),
            (i64::MIN, "8000000000000000"),
        ] {
            let e = encode_i64(v);
            assert_eq!(hex::encode(&e), h, "{v}");
            assert_eq!(decode_i64(&e), Some(v));
        }
        assert_eq!(decode_i64(&[0x00, 0x01]), None);
        assert_eq!(decode_i64(&[0xff, 0x80]), None);
        assert_eq!(decode_i64(&[]), None);
        assert_eq!(decode_i64(&[1; 9]), None);
    }

    #[test]
    fn long_form_lengths() {
        for len in [0usize, 1, 127, 128, 255, 256, 65535, 65536] {
            let content = vec![7u8; len];
            let mut out = Vec::new();
            push_tlv(&mut out, 0x04, &content);
            let expect_hdr = match len {
                0..=127 => 2,
                128..=255 => 3,
                256..=65535 => 4,
                _ => 5,
            };
            assert_eq!(out.len(), len + expect_hdr);
            let mut r = Reader::new(&out);
            let el = r.read_element().expect("read back");
            assert_eq!(el.content.len(), len);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn reader_rejects_non_minimal_and_odd_forms() {
        let cases: &[(&[u8], DerError)] = &[
            (&[0x04], DerError::Truncated),
            (&[0x04, 0x02, 0x00], DerError::Truncated),
            (
                &[0x04, 0x81, 0x05, 0, 0, 0, 0, 0],
                DerError::Malformed("non-minimal length (short form required)"),
            ),
            (&[0x04, 0x80], DerError::Malformed("indefinite length")),
            (
                &[0x1f, 0x01, 0x00],
                DerError::Malformed("high tag number form is not supported"),
            ),
            (
                &[0x04, 0x85, 1, 0, 0, 0, 0],
                DerError::Malformed("length field longer than 4 bytes"),
            ),
            (&[0x04, 0x82], DerError::Truncated),
            (&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff], DerError::Truncated),
        ];
        for (input, want) in cases {
            let mut r = Reader::new(input);
            assert_eq!(r.read_element().map(|_| ()), Err(*want), "{input:02x?}");
        }
        // Leading zero in a long-form length.
        let mut v = vec![0x04, 0x82, 0x00, 0x80];
        v.extend(std::iter::repeat_n(0u8, 0x80));
        let mut r = Reader::new(&v);
        assert_eq!(
            r.read_element().map(|_| ()),
            Err(DerError::Malformed("non-minimal length (leading zero)"))
        );
    }
}
