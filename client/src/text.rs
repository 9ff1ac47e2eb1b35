//! Binary-safe text forms of keys and values for the CLI, batch files and
//! `save` output.

use base64::Engine as _;

/// How keys and values are written as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// Printable ASCII as is, backslash as `\\`, every other byte `\xNN`,
    /// and a leading `-` as `\x2d` (so no token looks like an option): one
    /// whitespace-free token per key or value.
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
            for (i, &b) in bytes.iter().enumerate() {
                match b {
                    b'\\' => s.push_str("\\\\"),
                    b'-' if i == 0 => s.push_str("\\x2d"),
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
        Encoding::Text => decode_escaped(token.as_bytes()),
        Encoding::Hex => {
            if !token.len().is_multiple_of(2) {
                return Err("odd number of hex digits".into());
            }
            token
                .as_bytes()
                .chunks(2)
                .enumerate()
                .map(|(i, pair)| {
                    hex_byte(pair).ok_or_else(|| format!("bad hex digits at offset {}", 2 * i))
                })
                .collect()
        }
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(token)
            .map_err(|e| format!("bad base64: {e}")),
    }
}

/// The value of two hexadecimal digits (nothing else: no sign, no space).
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    match pair {
        [hi, lo] => Some((digit(*hi)? * 16 + digit(*lo)?) as u8),
        _ => None,
    }
}

/// Bytes with the text encoding's escapes resolved: `\\` is a backslash,
/// `\xNN` the byte NN, every other byte stands for itself (so command-line
/// arguments may also hold spaces or non-ASCII bytes as they are). A
/// backslash starting anything else is refused.
pub fn decode_escaped(b: &[u8]) -> Result<Vec<u8>, String> {
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
                let hex = b.get(i + 2..i + 4).ok_or("truncated \\x escape")?;
                out.push(
                    hex_byte(hex)
                        .ok_or_else(|| format!("bad escape \\x{}", String::from_utf8_lossy(hex)))?,
                );
                i += 4;
            }
            _ => return Err("a backslash must start \\\\ (a literal backslash) or \\xNN".into()),
        }
    }
    Ok(out)
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
        // from_str_radix would take a sign: "+f" is not two hex digits.
        assert!(decode_text("\\x+f", Encoding::Text).is_err());
        assert!(decode_text("+f", Encoding::Hex).is_err());
        assert!(decode_text("\\q", Encoding::Text)
            .unwrap_err()
            .contains("literal backslash"));
    }

    #[test]
    fn no_text_token_looks_like_an_option() {
        for key in [&b"-"[..], b"--create", b"-x", b"--", b"--if-version=3"] {
            let t = encode_text(key, Encoding::Text);
            assert!(t.starts_with("\\x2d"), "{t}");
            assert_eq!(decode_text(&t, Encoding::Text).unwrap(), key);
        }
        assert_eq!(encode_text(b"a-b", Encoding::Text), "a-b");
    }

    #[test]
    fn arguments_take_the_escapes_output_prints() {
        // What `list` prints for the key "a b" is typed back as the same key.
        let printed = encode_text(b"a b", Encoding::Text);
        assert_eq!(decode_escaped(printed.as_bytes()).unwrap(), b"a b");
        // Raw bytes, spaces included, stand for themselves.
        assert_eq!(decode_escaped(b"a b\xff\xc3").unwrap(), b"a b\xff\xc3");
        assert_eq!(decode_escaped(b"C:\\\\dir").unwrap(), b"C:\\dir");
        assert!(decode_escaped(b"C:\\dir").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_round_trip_as_one_option_free_token(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            for enc in [Encoding::Text, Encoding::Hex, Encoding::Base64] {
                let t = encode_text(&bytes, enc);
                proptest::prop_assert!(!t.contains(char::is_whitespace));
                proptest::prop_assert!(!t.starts_with('-'));
                proptest::prop_assert_eq!(t.is_empty(), bytes.is_empty());
                proptest::prop_assert_eq!(&decode_text(&t, enc).unwrap(), &bytes);
            }
            let printed = encode_text(&bytes, Encoding::Text);
            proptest::prop_assert_eq!(decode_escaped(printed.as_bytes()).unwrap(), bytes);
        }
    }
}
