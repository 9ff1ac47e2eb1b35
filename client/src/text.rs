//! Binary-safe text forms of keys and values: the tokens of listings, batch
//! and save files, and command-line arguments. Standard library only: base64
//! is implemented here (standard alphabet, canonical padding).

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
    /// Every encoding.
    pub const ALL: [Encoding; 3] = [Encoding::Text, Encoding::Hex, Encoding::Base64];

    /// Name used in JSON output and save headers.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Text => "text",
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
        }
    }

    /// The encoding called `name` (see [`Encoding::name`]).
    pub fn from_name(name: &str) -> Option<Encoding> {
        Encoding::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// Why a token is not valid in its encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("odd number of hex digits")]
    OddHexDigits,
    #[error("bad hex digits at offset {0}")]
    BadHex(usize),
    #[error("truncated \\x escape")]
    TruncatedEscape,
    #[error("bad escape \\x{0}")]
    BadEscape(String),
    #[error("a backslash must start \\\\ (a literal backslash) or \\xNN")]
    LoneBackslash,
    #[error("bad base64: {what} at offset {offset}")]
    BadBase64 { what: &'static str, offset: usize },
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
        Encoding::Base64 => base64_encode(bytes),
    }
}

/// The bytes of a token written by [`encode_text`].
pub fn decode_text(token: &str, enc: Encoding) -> Result<Vec<u8>, TextError> {
    match enc {
        Encoding::Text => decode_escaped(token.as_bytes()),
        Encoding::Hex => {
            if !token.len().is_multiple_of(2) {
                return Err(TextError::OddHexDigits);
            }
            token
                .as_bytes()
                .chunks(2)
                .enumerate()
                .map(|(i, pair)| hex_byte(pair).ok_or(TextError::BadHex(2 * i)))
                .collect()
        }
        Encoding::Base64 => base64_decode(token),
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
pub fn decode_escaped(b: &[u8]) -> Result<Vec<u8>, TextError> {
    let mut out = Vec::with_capacity(b.len());
    let mut rest = b;
    while let Some((&c, after)) = rest.split_first() {
        rest = after;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        match rest.split_first() {
            Some((b'\\', after)) => {
                out.push(b'\\');
                rest = after;
            }
            Some((b'x', after)) => {
                let hex = after.get(..2).ok_or(TextError::TruncatedEscape)?;
                let byte = hex_byte(hex).ok_or_else(|| {
                    TextError::BadEscape(String::from_utf8_lossy(hex).into_owned())
                })?;
                out.push(byte);
                rest = after.get(2..).unwrap_or_default();
            }
            _ => return Err(TextError::LoneBackslash),
        }
    }
    Ok(out)
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with `=` padding (RFC 4648, section 4).
fn base64_encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let n = u32::from_be_bytes([0, group[0], group[1], group[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// The value of one base64 symbol.
fn base64_sextet(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    }))
}

/// Decodes what [`base64_encode`] writes, and nothing else: whole groups of
/// four symbols, padding only at the end, unused bits zero (so every byte
/// string has exactly one token).
fn base64_decode(token: &str) -> Result<Vec<u8>, TextError> {
    let t = token.as_bytes();
    let bad = |what, offset| TextError::BadBase64 { what, offset };
    if !t.len().is_multiple_of(4) {
        return Err(bad("length not a multiple of 4", t.len()));
    }
    let groups = t.len() / 4;
    let mut out = Vec::with_capacity(groups * 3);
    for (g, group) in t.chunks(4).enumerate() {
        let pad = if g + 1 == groups {
            group.iter().rev().take_while(|&&c| c == b'=').count()
        } else {
            0
        };
        if pad > 2 {
            return Err(bad("too much padding", 4 * g + 4 - pad));
        }
        let mut n = 0u32;
        for (i, &c) in group.iter().take(4 - pad).enumerate() {
            let v = base64_sextet(c).ok_or(bad("invalid symbol", 4 * g + i))?;
            n |= v << (18 - 6 * i);
        }
        if n & ((1 << (8 * pad)) - 1) != 0 {
            return Err(bad("non-zero unused bits", 4 * g + 3 - pad));
        }
        let [_, a, b, c] = n.to_be_bytes();
        out.extend_from_slice(&[a, b, c][..3 - pad]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips_in_every_encoding() {
        let all: Vec<u8> = (0..=255).collect();
        for enc in Encoding::ALL {
            let t = encode_text(&all, enc);
            assert!(
                !t.contains(char::is_whitespace),
                "{enc:?} token has whitespace"
            );
            assert_eq!(decode_text(&t, enc).unwrap(), all, "{enc:?}");
            assert_eq!(Encoding::from_name(enc.name()), Some(enc));
        }
        assert_eq!(Encoding::from_name("utf8"), None);
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
        assert!(decode_text("\\", Encoding::Text).is_err());
        assert!(decode_text("abc", Encoding::Hex).is_err());
        assert!(decode_text("zz", Encoding::Hex).is_err());
        assert!(decode_text("!!", Encoding::Base64).is_err());
        // from_str_radix would take a sign: "+f" is not two hex digits.
        assert!(decode_text("\\x+f", Encoding::Text).is_err());
        assert!(decode_text("+f", Encoding::Hex).is_err());
        assert!(decode_text("\\q", Encoding::Text)
            .unwrap_err()
            .to_string()
            .contains("literal backslash"));
        assert_eq!(
            decode_text("\\xg1", Encoding::Text)
                .unwrap_err()
                .to_string(),
            "bad escape \\xg1"
        );
        // Multi-byte characters after \x are refused, not split.
        assert!(decode_escaped("\\xé".as_bytes()).is_err());
    }

    #[test]
    fn base64_is_rfc_4648() {
        // The test vectors of RFC 4648, section 10.
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode_text(plain.as_bytes(), Encoding::Base64), coded);
            assert_eq!(
                decode_text(coded, Encoding::Base64).unwrap(),
                plain.as_bytes()
            );
        }
        assert_eq!(encode_text(&[0xfb, 0xff], Encoding::Base64), "+/8=");
    }

    #[test]
    fn base64_has_one_token_per_byte_string() {
        for bad in [
            "Zg", "Zg=", "Zm9", "Z===", "====", "Zg==Zg==", "Zh==", "Zm9=", "Zm=v", "Zm9v\n",
            "Zm 9", "-_8=",
        ] {
            assert!(decode_text(bad, Encoding::Base64).is_err(), "{bad:?}");
        }
        assert_eq!(
            decode_text("Zh==", Encoding::Base64)
                .unwrap_err()
                .to_string(),
            "bad base64: non-zero unused bits at offset 1"
        );
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
            for enc in Encoding::ALL {
                let t = encode_text(&bytes, enc);
                proptest::prop_assert!(!t.contains(char::is_whitespace));
                proptest::prop_assert!(!t.starts_with('-'));
                proptest::prop_assert_eq!(t.is_empty(), bytes.is_empty());
                proptest::prop_assert_eq!(&decode_text(&t, enc).unwrap(), &bytes);
            }
            let printed = encode_text(&bytes, Encoding::Text);
            proptest::prop_assert_eq!(decode_escaped(printed.as_bytes()).unwrap(), bytes);
        }

        /// Base64 reads and writes exactly what the `base64` crate's
        /// standard engine (which the CLI used before) does.
        #[test]
        fn base64_agrees_with_the_base64_crate(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            token in "[A-Za-z0-9+/=_ -]{0,16}",
        ) {
            use base64::Engine as _;
            let engine = base64::engine::general_purpose::STANDARD;
            proptest::prop_assert_eq!(encode_text(&bytes, Encoding::Base64), engine.encode(&bytes));
            proptest::prop_assert_eq!(decode_text(&token, Encoding::Base64).ok(), engine.decode(&token).ok());
        }

        /// Whatever the input, decoding returns (never panics), and every
        /// token decoded encodes back to itself (hex: in lowercase).
        #[test]
        fn decoding_any_token_is_total_and_canonical(
            hexish in "[0-9a-fA-F+ -]{0,6}",
            base64ish in "([A-Za-z0-9+/]{4}){0,2}[A-Za-z0-9+/]{0,4}={0,3}",
            textish in "[a-z0-9\\\\x -]{0,12}",
        ) {
            if let Ok(bytes) = decode_text(&hexish, Encoding::Hex) {
                proptest::prop_assert_eq!(encode_text(&bytes, Encoding::Hex), hexish.to_ascii_lowercase());
            }
            if let Ok(bytes) = decode_text(&base64ish, Encoding::Base64) {
                proptest::prop_assert_eq!(encode_text(&bytes, Encoding::Base64), base64ish);
            }
            for enc in Encoding::ALL {
                let _ = decode_text(&textish, enc);
            }
        }
    }
}
