//! Binary-safe text forms of keys and values for the CLI, batch files and
//! `save` output.

use base64::Engine as _;

/// How keys and values are written as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// Printable ASCII as is, backslash as `\\`, every other byte `\xNN`:
    /// one whitespace-free token per key or value.
    #[default]
    Text,
    /// Lowercase hexadecimal.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

impl Encoding {
    /// Name used in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Text => "text",
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
        }
    }
}

/// `bytes` as one token in `enc`. The empty string stands for no bytes.
pub fn encode_text(bytes: &[u8], enc: Encoding) -> String {
    match enc {
        Encoding::Text => {
            let mut s = String::with_capacity(bytes.len());
            for &b in bytes {
                match b {
                    b'\\' => s.push_str("\\\\"),
                    0x21..=0x7e => s.push(b as char),
                    _ => s.push_str(&format!("\\x{b:02x}")),
                }
            }
            s
        }
        Encoding::Hex => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
    }
}

/// The bytes of a token written by [`encode_text`].
pub fn decode_text(token: &str, enc: Encoding) -> Result<Vec<u8>, String> {
    match enc {
        Encoding::Text => {
            let b = token.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                if b[i] != b'\\' {
                    out.push(b[i]);
                    i += 1;
                    continue;
                }
                match b.get(i + 1) {
                    Some(b'\\') => {
                        out.push(b'\\');
                        i += 2;
                    }
                    Some(b'x') => {
                        let hex = token.get(i + 2..i + 4).ok_or("truncated \\x escape")?;
                        out.push(
                            u8::from_str_radix(hex, 16)
                                .map_err(|_| format!("bad escape \\x{hex}"))?,
                        );
                        i += 4;
                    }
                    _ => return Err("a backslash must start \\\\ or \\xNN".into()),
                }
            }
            Ok(out)
        }
        Encoding::Hex => {
            if !token.len().is_multiple_of(2) {
                return Err("odd number of hex digits".into());
            }
            (0..token.len())
                .step_by(2)
                .map(|i| {
                    token
                        .get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| format!("bad hex digits at offset {i}"))
                })
                .collect()
        }
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(token)
            .map_err(|e| format!("bad base64: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips_in_every_encoding() {
        let all: Vec<u8> = (0..=255).collect();
        for enc in [Encoding::Text, Encoding::Hex, Encoding::Base64] {
            let t = encode_text(&all, enc);
            assert!(
                !t.contains(char::is_whitespace),
                "{enc:?} token has whitespace"
            );
            assert_eq!(decode_text(&t, enc).unwrap(), all, "{enc:?}");
        }
    }

    #[test]
    fn text_escapes_only_what_it_must() {
        assert_eq!(
            encode_text(b"a b\\c\n", Encoding::Text),
            "a\\x20b\\\\c\\x0a"
        );
        assert_eq!(decode_text("plain", Encoding::Text).unwrap(), b"plain");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        assert!(decode_text("\\q", Encoding::Text).is_err());
        assert!(decode_text("\\x4", Encoding::Text).is_err());
        assert!(decode_text("abc", Encoding::Hex).is_err());
        assert!(decode_text("zz", Encoding::Hex).is_err());
        assert!(decode_text("!!", Encoding::Base64).is_err());
    }
}
