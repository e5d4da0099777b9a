//! PEM framing for Nebula certificates and keys: the banner names, and a decoder/encoder that reads and
//! writes exactly what Go's `encoding/pem` does (64-column base64, `-----BEGIN x-----` / `-----END x-----`).
//!
//! Decoding follows Go's `pem.Decode`: text before the first `-----BEGIN ` that starts a line is skipped
//! (comments such as `# my key` are common in Nebula files), RFC 1421 header lines (`Key: value`) right
//! after the BEGIN line are skipped, spaces, tabs, CR and LF inside the base64 are ignored, padding is
//! required and the END line must repeat the label and carry nothing but whitespace after its dashes.
//! The one deliberate difference: once a line starting with `-----BEGIN ` is found, a malformed block is
//! an error ([`PemError`]) instead of being silently skipped in search of a later block.

use thiserror::Error;
use zeroize::Zeroizing;

/// A v1 (protobuf) certificate.
pub const CERT_V1_BANNER: &str = "NEBULA CERTIFICATE";
/// A v2 (ASN.1 DER) certificate, Nebula 1.10 and later.
pub const CERT_V2_BANNER: &str = "NEBULA CERTIFICATE V2";
/// A host's 32-byte X25519 private key.
pub const X25519_PRIVATE_KEY_BANNER: &str = "NEBULA X25519 PRIVATE KEY";
/// A host's 32-byte X25519 public key.
pub const X25519_PUBLIC_KEY_BANNER: &str = "NEBULA X25519 PUBLIC KEY";
/// A CA's 64-byte Ed25519 private key (seed || public key).
pub const ED25519_PRIVATE_KEY_BANNER: &str = "NEBULA ED25519 PRIVATE KEY";
/// A CA's 32-byte Ed25519 public key.
pub const ED25519_PUBLIC_KEY_BANNER: &str = "NEBULA ED25519 PUBLIC KEY";
/// A CA's Ed25519 private key encrypted with a passphrase (`RawNebulaEncryptedData`).
pub const ED25519_ENCRYPTED_PRIVATE_KEY_BANNER: &str = "NEBULA ED25519 ENCRYPTED PRIVATE KEY";
/// A host's 32-byte P-256 ECDH private scalar.
pub const P256_PRIVATE_KEY_BANNER: &str = "NEBULA P256 PRIVATE KEY";
/// A host's 65-byte uncompressed P-256 ECDH public point.
pub const P256_PUBLIC_KEY_BANNER: &str = "NEBULA P256 PUBLIC KEY";
/// A CA's 32-byte ECDSA P-256 private scalar.
pub const ECDSA_P256_PRIVATE_KEY_BANNER: &str = "NEBULA ECDSA P256 PRIVATE KEY";
/// A CA's 65-byte uncompressed ECDSA P-256 public point (emitted by Go from 1.10.1).
pub const ECDSA_P256_PUBLIC_KEY_BANNER: &str = "NEBULA ECDSA P256 PUBLIC KEY";
/// A CA's ECDSA P-256 private key encrypted with a passphrase (`RawNebulaEncryptedData`).
pub const ECDSA_P256_ENCRYPTED_PRIVATE_KEY_BANNER: &str = "NEBULA ECDSA P256 ENCRYPTED PRIVATE KEY";

/// Go's `pem.EncodeToMemory` wraps base64 at this many characters.
const LINE_LEN: usize = 64;
const BEGIN: &[u8] = b"-----BEGIN ";
const END: &[u8] = b"-----END ";
const DASHES: &[u8] = b"-----";

/// One decoded PEM block. Header lines (`Key: value`), which Nebula never writes, are dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemBlock {
    /// The banner between `-----BEGIN ` and `-----`, e.g. [`CERT_V1_BANNER`].
    pub label: String,
    /// The base64-decoded body.
    pub data: Vec<u8>,
}

/// A PEM block that begins (a line starting with `-----BEGIN `) but is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PemError {
    /// The `-----BEGIN ` line does not end with `-----`; the file is probably cut or hand-edited.
    #[error("malformed PEM BEGIN line (it must end with \"-----\")")]
    BadBeginLine,
    /// No `-----END ` line follows the BEGIN line: the block is truncated.
    #[error("truncated PEM block \"{label}\": no END line")]
    MissingEnd {
        /// The label from the BEGIN line.
        label: String,
    },
    /// The END line names a different label than the BEGIN line, or is not closed by `-----`.
    #[error("PEM END line does not match \"-----END {label}-----\" (found \"{found}\")")]
    MismatchedEnd {
        /// The label from the BEGIN line.
        label: String,
        /// The END line as found (lossily decoded, trimmed).
        found: String,
    },
    /// The body is not valid padded standard base64.
    #[error("PEM block \"{label}\" has invalid base64 body")]
    Base64 {
        /// The label from the BEGIN line.
        label: String,
    },
    /// The label is not valid UTF-8.
    #[error("PEM label is not valid UTF-8")]
    LabelNotUtf8,
}

/// Splits off the first line (LF or CRLF), returning it without its line ending and trailing spaces/tabs,
/// and the remainder after the line ending (as Go's `getLine`).
fn get_line(data: &[u8]) -> (&[u8], &[u8]) {
    let (mut line, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let (l, r) = data.split_at(i);
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            (l, r.get(1..).unwrap_or_default())
        }
        None => (data, &data[data.len()..]),
    };
    while let Some((&last, head)) = line.split_last() {
        if last == b' ' || last == b'\t' {
            line = head;
        } else {
            break;
        }
    }
    (line, rest)
}

/// Finds the first `-----BEGIN ` that starts the input or a line; returns the bytes after it.
fn find_begin(data: &[u8]) -> Option<&[u8]> {
    if let Some(after) = data.strip_prefix(BEGIN) {
        return Some(after);
    }
    find_sub(data, b"\n-----BEGIN ").and_then(|i| data.get(i + 1 + BEGIN.len()..))
}

fn find_sub(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Decodes the first PEM block in `input`.
///
/// Returns `Ok(None)` when the input holds no further block (only whitespace, comments or other text),
/// `Ok(Some((block, rest)))` with the bytes after the END line, or an error for a block that begins but
/// is malformed.
pub fn decode(input: &[u8]) -> Result<Option<(PemBlock, &[u8])>, PemError> {
    let Some(after_begin) = find_begin(input) else {
        return Ok(None);
    };
    let (type_line, mut rest) = get_line(after_begin);
    let label_bytes = type_line
        .strip_suffix(DASHES)
        .ok_or(PemError::BadBeginLine)?;
    let label = std::str::from_utf8(label_bytes)
        .map_err(|_| PemError::LabelNotUtf8)?
        .to_owned();

    // Optional RFC 1421 header lines: any line containing ':' before the body.
    let mut had_headers = false;
    loop {
        if rest.is_empty() {
            return Err(PemError::MissingEnd { label });
        }
        let (line, next) = get_line(rest);
        if !line.contains(&b':') {
            break;
        }
        had_headers = true;
        rest = next;
    }

    // The END line: directly here when the body is empty, otherwise after a newline.
    let (body, end_line_start) = if !had_headers && rest.starts_with(END) {
        (&rest[..0], rest)
    } else {
        let i = find_sub(rest, b"\n-----END ").ok_or_else(|| PemError::MissingEnd {
            label: label.clone(),
        })?;
        let (body, end) = rest.split_at(i);
        (body, end.get(1..).unwrap_or_default())
    };
    let (end_line, after) = get_line(end_line_start);
    let expected_tail = [label_bytes, DASHES].concat();
    let end_ok = end_line
        .strip_prefix(END)
        .is_some_and(|t| t == expected_tail.as_slice());
    if !end_ok {
        return Err(PemError::MismatchedEnd {
            label,
            found: lossy(end_line),
        });
    }
    let data = base64_decode(body).ok_or_else(|| PemError::Base64 {
        label: label.clone(),
    })?;
    Ok(Some((PemBlock { label, data }, after)))
}

/// Decodes every PEM block in `input`, in order. Text outside blocks is ignored; an empty result means
/// the input held no block at all.
pub fn decode_all(input: &[u8]) -> Result<Vec<PemBlock>, PemError> {
    let mut out = Vec::new();
    let mut rest = input;
    while let Some((block, r)) = decode(rest)? {
        out.push(block);
        rest = r;
    }
    Ok(out)
}

/// Encodes one block exactly as Go's `pem.EncodeToMemory` (no headers): base64 in 64-character lines,
/// every line ending in `\n`.
pub fn encode(label: &str, data: &[u8]) -> String {
    // Wiped: when `data` is a private key this is the key in another alphabet.
    let b64 = Zeroizing::new(base64_encode(data));
    // Exact size (banners 32 bytes, one newline per line), so `out` never reallocates: a secret
    // wrapped by [`encode_secret`] leaves no unwiped copy behind.
    let mut out =
        String::with_capacity(b64.len() + b64.len().div_ceil(LINE_LEN) + 2 * label.len() + 32);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // base64 output is ASCII, so slicing at any byte index is on a char boundary.
    let mut s = b64.as_str();
    while !s.is_empty() {
        let (line, tail) = s.split_at(s.len().min(LINE_LEN));
        out.push_str(line);
        out.push('\n');
        s = tail;
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// [`encode`] for a private key: the text is wiped when dropped.
pub fn encode_secret(label: &str, data: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(encode(label, data))
}

const B64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard padded base64 (RFC 4648 §4).
fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b0 = chunk.first().copied().unwrap_or(0);
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        let sym = |shift: u32| char::from(B64_ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sym(18));
        out.push(sym(12));
        out.push(if chunk.len() > 1 { sym(6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(0) } else { '=' });
    }
    out
}

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes a PEM body like Go: spaces, tabs, CR and LF are ignored anywhere; padding is required for a
/// short final group; nothing but whitespace may follow padding. Non-zero unused bits in the last
/// symbol are accepted (Go's `StdEncoding` is not strict).
fn base64_decode(body: &[u8]) -> Option<Vec<u8>> {
    // The body may be a private key: the partial output (on an error) and the last group are wiped.
    // The capacity is an upper bound of the decoded length, so `out` never reallocates (which
    // would leave an unwiped copy behind).
    let mut out = Zeroizing::new(Vec::with_capacity(body.len() / 4 * 3));
    let mut group = Zeroizing::new([0u8; 4]);
    let mut n = 0usize;
    let mut pad = 0usize;
    for &c in body {
        if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
            continue;
        }
        if c == b'=' {
            // Padding may only fill the last one or two places of a group.
            if n < 2 {
                return None;
            }
            pad += 1;
            n += 1;
            if n == 4 {
                if pad > 2 {
                    return None;
                }
                finish_group(&group, 4 - pad, &mut out);
                n = 0;
                // From here on only whitespace may follow; signal with pad > 0 and n == 0.
            }
            continue;
        }
        if pad > 0 {
            // Data after (or inside) padding.
            return None;
        }
        let v = b64_value(c)?;
        if let Some(slot) = group.get_mut(n) {
            *slot = v;
        }
        n += 1;
        if n == 4 {
            finish_group(&group, 4, &mut out);
            n = 0;
        }
    }
    if n != 0 {
        return None;
    }
    Some(std::mem::take(&mut *out))
}

/// Appends the bytes carried by `symbols` leading sextets of `group` (4 → 3 bytes, 3 → 2, 2 → 1).
fn finish_group(group: &[u8; 4], symbols: usize, out: &mut Vec<u8>) {
    let n = (u32::from(group[0]) << 18)
        | (u32::from(group[1]) << 12)
        | if symbols > 2 {
            u32::from(group[2]) << 6
        } else {
            0
        }
        | if symbols > 3 { u32::from(group[3]) } else { 0 };
    out.push((n >> 16) as u8);
    if symbols > 2 {
        out.push((n >> 8) as u8);
    }
    if symbols > 3 {
        out.push(n as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with Debian's nebula-cert 1.6.1: `nebula-cert ca -name t161`.
    const GO_V1_CA: &str = "-----BEGIN NEBULA CERTIFICATE-----
CjYKBHQxNjEo9fOg2AYw9dql5wY6IBllZ/mLRs4blJeTmggspt97k/PmuwWWgh4J
qzzaPoj4QAESQFCFzTteMdEJLScM/Tns7l9KWpaxM8b3kzqW6M5HAMOOBLTt6cEH
YtAF290OZLYQgKT3x1w7B/U7m4Xz8gGloQY=
-----END NEBULA CERTIFICATE-----
";
    // Made with Debian's nebula-cert 1.11.0: `nebula-cert ca -curve P256 -name tp` (147-byte body, 3 lines).
    const GO_V2_P256_CA: &str = "-----BEGIN NEBULA CERTIFICATE V2-----
MIGjoBOAAnRwhAH/hQRrCDn1hgRs6W11gQEBgkEEG3NiCfrNHZubGEihh/WM0XuS
pxw6IbyED2YXBueHlUzwHq5GSRHg6xhq7AqQsrpVxwqyobMWBTaheSyFOlY1VING
MEQCIDKdAi1oTUczQsCH+f5BidDd9JHHYVSPuCLOIiTAYxnNAiBS9JuJs5TaxMgt
XpopzW6kir2DLd3MVF0/CWe8AZ5/AQ==
-----END NEBULA CERTIFICATE V2-----
";

    #[test]
    fn go_blocks_round_trip_byte_identical() {
        for sample in [GO_V1_CA, GO_V2_P256_CA] {
            let (block, rest) = decode(sample.as_bytes()).unwrap().unwrap();
            assert!(rest.is_empty());
            assert_eq!(encode(&block.label, &block.data), sample);
        }
        let (b, _) = decode(GO_V1_CA.as_bytes()).unwrap().unwrap();
        assert_eq!(b.label, CERT_V1_BANNER);
        // ca.crt bodies begin with field 1 (details), length-delimited.
        assert_eq!(b.data.first(), Some(&0x0a));
        let (b, _) = decode(GO_V2_P256_CA.as_bytes()).unwrap().unwrap();
        assert_eq!(b.label, CERT_V2_BANNER);
        assert_eq!(b.data.len(), 166);
        assert_eq!(&b.data[..3], &[0x30, 0x81, 0xa3]);
    }

    #[test]
    fn encode_matches_go_line_layout() {
        // Go: exactly 48 bytes -> one full 64-char line; empty data -> no body line.
        let e = encode("T", &[0u8; 48]);
        assert_eq!(
            e,
            format!("-----BEGIN T-----\n{}\n-----END T-----\n", "A".repeat(64))
        );
        assert_eq!(encode("T", &[]), "-----BEGIN T-----\n-----END T-----\n");
        let e = encode("T", &[0xff; 49]);
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2], "/w==");
    }

    #[test]
    fn base64_round_trip_all_lengths() {
        for n in 0..200usize {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            let e = encode("X", &data);
            let (b, rest) = decode(e.as_bytes()).unwrap().unwrap();
            assert_eq!(b.data, data, "length {n}");
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn empty_block_decodes() {
        let (b, rest) = decode(b"-----BEGIN E-----\n-----END E-----\nafter")
            .unwrap()
            .unwrap();
        assert_eq!(b.label, "E");
        assert!(b.data.is_empty());
        assert_eq!(rest, b"after");
    }

    #[test]
    fn skips_leading_comments_and_returns_rest() {
        let input = format!("# a comment\n\n{GO_V1_CA}\n# trailer\n{GO_V2_P256_CA}");
        let (b, rest) = decode(input.as_bytes()).unwrap().unwrap();
        assert_eq!(b.label, CERT_V1_BANNER);
        assert_eq!(rest, format!("\n# trailer\n{GO_V2_P256_CA}").as_bytes());
        let all = decode_all(input.as_bytes()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].label, CERT_V2_BANNER);
    }

    #[test]
    fn no_block_is_none() {
        assert_eq!(decode(b"").unwrap(), None);
        assert_eq!(decode(b"  \n\t\n").unwrap(), None);
        assert_eq!(decode(b"just some text\n").unwrap(), None);
        // Go's "invalid PEM" sample: "-BEGIN" is not a BEGIN line.
        assert_eq!(
            decode(b"# x\n-BEGIN NEBULA X25519 PRIVATE KEY-----\nAAAA\n-END NEBULA X25519 PRIVATE KEY-----")
                .unwrap(),
            None
        );
        // BEGIN must start a line (Go: start of input or after '\n').
        assert_eq!(
            decode(b"x -----BEGIN A-----\nAAAA\n-----END A-----\n").unwrap(),
            None
        );
        assert!(decode_all(b"nothing").unwrap().is_empty());
    }

    #[test]
    fn crlf_headers_whitespace_accepted() {
        let input = b"-----BEGIN K-----  \r\nProc-Type: 4,ENCRYPTED\r\nX: y\r\n\r\nAA\tAA \r\nAQ==\r\n-----END K----- \t\r\nrest";
        let (b, rest) = decode(input).unwrap().unwrap();
        assert_eq!(b.label, "K");
        assert_eq!(b.data, vec![0, 0, 0, 1]);
        assert_eq!(rest, b"rest");
        // No trailing newline after END.
        let (b, rest) = decode(b"-----BEGIN K-----\nAQ==\n-----END K-----")
            .unwrap()
            .unwrap();
        assert_eq!(b.data, vec![1]);
        assert!(rest.is_empty());
    }

    #[test]
    fn truncated_block_is_error() {
        let cut = &GO_V1_CA[..GO_V1_CA.len() - 40];
        assert!(matches!(
            decode(cut.as_bytes()),
            Err(PemError::MissingEnd { .. })
        ));
        assert!(matches!(
            decode(b"-----BEGIN A-----\n"),
            Err(PemError::MissingEnd { .. })
        ));
        assert!(matches!(
            decode(b"-----BEGIN A-----"),
            Err(PemError::MissingEnd { .. })
        ));
        assert!(matches!(
            decode(b"-----BEGIN A-"),
            Err(PemError::BadBeginLine)
        ));
        assert!(decode_all(format!("{GO_V1_CA}{cut}").as_bytes()).is_err());
    }

    #[test]
    fn mismatched_end_is_error() {
        let r = decode(b"-----BEGIN A-----\nAAAA\n-----END B-----\n");
        assert!(
            matches!(r, Err(PemError::MismatchedEnd { ref found, .. }) if found == "-----END B-----")
        );
        let r = decode(b"-----BEGIN A-----\nAAAA\n-----END A-----junk\n");
        assert!(matches!(r, Err(PemError::MismatchedEnd { .. })));
        let r = decode(b"-----BEGIN A-----\nAAAA\n-----END A----\n");
        assert!(matches!(r, Err(PemError::MismatchedEnd { .. })));
    }

    #[test]
    fn bad_base64_is_error() {
        for body in [
            "AAA",      // incomplete group, no padding
            "A===",     // padding too early
            "AA=A",     // data inside padding
            "AA==AA==", // data after padding
            "AA*A",     // not in the alphabet
            "AAAA=",    // lone padding
            "AAAAA",    // dangling symbol
            "AA-_",     // URL alphabet is not standard base64
        ] {
            let input = format!("-----BEGIN A-----\n{body}\n-----END A-----\n");
            assert!(
                matches!(decode(input.as_bytes()), Err(PemError::Base64 { .. })),
                "{body}"
            );
        }
        // Non-zero unused bits are accepted like Go's non-strict StdEncoding.
        let (b, _) = decode(b"-----BEGIN A-----\nAB==\n-----END A-----\n")
            .unwrap()
            .unwrap();
        assert_eq!(b.data, vec![0]);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u32;
        let alphabet = b"-BEGINDA =:\r\n\tA/+Q-----";
        for len in 0..300usize {
            let mut v = Vec::with_capacity(len + 20);
            v.extend_from_slice(b"-----BEGIN ");
            for _ in 0..len {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                v.push(alphabet[(seed >> 16) as usize % alphabet.len()]);
            }
            let _ = decode_all(&v);
            let _ = decode_all(&v[11..]);
        }
        // Every prefix of a valid document either decodes or errors, without panicking.
        let doc = format!("{GO_V1_CA}{GO_V2_P256_CA}");
        for i in 0..=doc.len() {
            let _ = decode_all(&doc.as_bytes()[..i]);
        }
    }

    /// `encode` sizes its output exactly, so the text that [`encode_secret`] wipes is the only
    /// copy: a reallocation while building it would leave the key behind in freed memory.
    #[test]
    fn encoding_never_reallocates() {
        for n in 0..300 {
            let data = vec![0xa5u8; n];
            let text = encode("NEBULA X25519 PRIVATE KEY", &data);
            assert_eq!(text.capacity(), text.len(), "{n} bytes");
            assert_eq!(decode(text.as_bytes()).unwrap().unwrap().0.data, data);
        }
    }
}
