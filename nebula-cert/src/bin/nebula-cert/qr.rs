//! `-out-qr`: a PNG QR code of certificate PEM text, drawn the way Go's `nebula-cert` does it with
//! skip2/go-qrcode (`Encode(pem, Medium, -5)`): error correction M, a 4-module quiet zone, 5 pixels per
//! module, a 1-bit palette image (white background, black modules), best zlib compression.

use qrcode::{Color, EcLevel, QrCode};

/// Pixels per module (go-qrcode's negative size -5).
pub const PIXELS_PER_MODULE: usize = 5;
/// Quiet zone width in modules on each side (go-qrcode's default border).
pub const QUIET_ZONE: usize = 4;

/// Encodes `content` as a QR code PNG. Errors are worded like go-qrcode's.
pub fn encode_png(content: &[u8]) -> Result<Vec<u8>, String> {
    let code = QrCode::with_error_correction_level(content, EcLevel::M).map_err(|e| match e {
        qrcode::types::QrError::DataTooLong => "content too long to encode".to_string(),
        other => other.to_string(),
    })?;
    let modules = code.width();
    let colors = code.to_colors();
    let real = modules + 2 * QUIET_ZONE;
    let size = real * PIXELS_PER_MODULE;
    let row_bytes = size.div_ceil(8);
    let mut pixels = vec![0u8; row_bytes * size];
    for y in 0..size {
        let my = y / PIXELS_PER_MODULE;
        for x in 0..size {
            let mx = x / PIXELS_PER_MODULE;
            let dark = my >= QUIET_ZONE
                && mx >= QUIET_ZONE
                && my < QUIET_ZONE + modules
                && mx < QUIET_ZONE + modules
                && colors.get((my - QUIET_ZONE) * modules + (mx - QUIET_ZONE))
                    == Some(&Color::Dark);
            if dark {
                if let Some(b) = pixels.get_mut(y * row_bytes + x / 8) {
                    *b |= 0x80 >> (x % 8);
                }
            }
        }
    }
    let width = u32::try_from(size).map_err(|_| "qr code too large".to_string())?;
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, width);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::One);
        // Palette index 0 = background (white), 1 = foreground (black), as go-qrcode orders them.
        enc.set_palette(vec![0xff, 0xff, 0xff, 0x00, 0x00, 0x00]);
        enc.set_compression(png::Compression::Best);
        let mut writer = enc.write_header().map_err(|e| e.to_string())?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// `-out-crt` and `-out-qr` of `ca` and `sign`: the certificate's PEM, and its QR code when asked.
pub fn write_cert(
    out_crt: &str,
    out_qr: &str,
    cert: &nebula_cert::cert::Certificate,
    stdout: &mut dyn std::io::Write,
) -> Result<(), crate::common::CliError> {
    let pem = cert.marshal_pem();
    crate::stdio::write_flag_output("out-crt", out_crt, pem.as_bytes(), stdout)?;
    write_qr(out_qr, &pem, stdout)
}

/// `-out-qr`: write a PNG QR code of `pem` to `path` (nothing when `path` is empty).
pub fn write_qr(
    path: &str,
    pem: &str,
    stdout: &mut dyn std::io::Write,
) -> Result<(), crate::common::CliError> {
    if path.is_empty() {
        return Ok(());
    }
    let png = encode_png(pem.as_bytes()).map_err(|e| {
        crate::common::CliError::failed(format!("error while generating qr code: {e}"))
    })?;
    crate::stdio::write_flag_output("out-qr", path, &png, stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>, png::OutputInfo) {
        let dec = png::Decoder::new(png_bytes);
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        (info.width, info.height, buf, info)
    }

    #[test]
    fn png_has_go_geometry() {
        let content =
            b"-----BEGIN NEBULA CERTIFICATE-----\nAAAA\n-----END NEBULA CERTIFICATE-----\n";
        let png_bytes = encode_png(content).unwrap();
        assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
        let code = QrCode::with_error_correction_level(&content[..], EcLevel::M).unwrap();
        let want = ((code.width() + 8) * 5) as u32;
        let (w, h, buf, info) = decode(&png_bytes);
        assert_eq!((w, h), (want, want));
        assert_eq!(info.bit_depth, png::BitDepth::One);
        assert_eq!(info.color_type, png::ColorType::Indexed);
        // Quiet zone is white (bit 0); the top-left finder pattern corner is black.
        assert_eq!(buf[0], 0);
        let row_bytes = (want as usize).div_ceil(8);
        let y = 4 * 5;
        let x = 4 * 5;
        assert_ne!(buf[y * row_bytes + x / 8] & (0x80 >> (x % 8)), 0);
    }

    #[test]
    fn too_long_is_an_error() {
        let big = vec![b'x'; 4000];
        assert_eq!(encode_png(&big).unwrap_err(), "content too long to encode");
    }
}
