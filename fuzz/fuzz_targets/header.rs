//! Fuzz target: the 16-byte packet header parser and encoder.
//! Any input must parse or fail cleanly; a parsed header must re-encode to the same 16 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::header::{Header, HeaderError, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    match Header::parse(data) {
        Ok(h) => {
            let Some(original) = data.get(..HEADER_LEN) else {
                panic!("parsed a header from {} bytes", data.len());
            };
            let mut out = [0u8; HEADER_LEN];
            h.encode(&mut out).expect("a parsed header always encodes");
            assert_eq!(&out[..], original);
            assert_eq!(h.to_bytes(), out);
            assert_eq!(Header::parse(&out), Ok(h));
            let (split, payload) = Header::parse_split(data).expect("parse succeeded");
            assert_eq!(split, h);
            assert_eq!(payload.len(), data.len() - HEADER_LEN);
            // The strict checks are pure functions of the parsed fields.
            assert_eq!(
                Header::parse_strict(data).is_ok(),
                h.version == 1 && h.is_valid_subtype()
            );
            let _ = h.to_string();
        }
        Err(e) => {
            assert!(data.len() < HEADER_LEN);
            assert_eq!(e, HeaderError::TooShort { len: data.len() });
        }
    }
});
