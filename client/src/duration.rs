//! Durations as nft and ipset users type them, for entry lifetimes (TTL):
//! `500ms`, `30s`, `5m`, `2h`, `1d`, combinations from the largest unit
//! down (`1h30m`, `1m30.5s`), decimals (`1.5s`, `0.25h`), and a bare number
//! as seconds (as ipset's `timeout`): `30` is `30s`. And the one text form
//! this crate prints them in, which the parser reads back.

use crate::{Error, Result, Ttl, MAX_TTL_MS};
use std::time::Duration;

/// The longest lifetime of an entry: 2^32 - 1 ms, about 49.7 days.
pub const MAX_TTL: Duration = Duration::from_millis(MAX_TTL_MS as u64);

/// The units, largest first, with their length in nanoseconds.
const UNITS: [(&str, u128); 5] = [
    ("d", 86_400 * NANOS_PER_SEC),
    ("h", 3_600 * NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
    ("ms", 1_000_000),
];
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Why a duration does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad duration {input:?}: {reason} (write e.g. 500ms, 30s, 5m, 2h, 1d, 1h30m; a bare number is seconds)")]
pub struct DurationError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses a duration (see the module's description). Units are `d`, `h`,
/// `m`, `s` and `ms`, each at most once and largest first; every number
/// may have a fraction (up to nanoseconds). Never panics.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let fail = |reason: String| DurationError {
        input: input.to_string(),
        reason,
    };
    if input.is_empty() {
        return Err(fail("it is empty".into()));
    }
    let mut rest = input;
    let mut total: u128 = 0;
    // Index into UNITS of the next unit allowed (units go largest first).
    let mut next_unit = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(num_len);
        if number.is_empty() {
            return Err(fail(format!(
                "expected a number at {:?}",
                after.chars().next().unwrap_or(' ')
            )));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = if unit.is_empty() {
            // Only a lone bare number: seconds.
            if rest.len() != input.len() || !after.is_empty() {
                return Err(fail(format!("{number} has no unit")));
            }
            NANOS_PER_SEC
        } else {
            let Some(i) = UNITS.iter().position(|(u, _)| *u == unit) else {
                return Err(fail(format!("unknown unit {unit:?}")));
            };
            if i < next_unit {
                return Err(fail(format!(
                    "unit {unit:?} repeated or out of order (largest first: 1h30m, not 30m1h)"
                )));
            }
            next_unit = i + 1;
            UNITS[i].1
        };
        let nanos = scaled(number, scale).map_err(fail)?;
        total = total
            .checked_add(nanos)
            .ok_or_else(|| fail("too long".into()))?;
        rest = after;
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| fail("too long".into()))?;
    Ok(Duration::new(secs, (total % NANOS_PER_SEC) as u32))
}

/// `number` (digits, at most one `.` with digits on at least one side)
/// times `scale` nanoseconds, exactly.
fn scaled(number: &str, scale: u128) -> Result<u128, String> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if frac.contains('.') || (whole.is_empty() && frac.is_empty()) {
        return Err(format!("{number:?} is not a number"));
    }
    if whole.len() > 30 {
        return Err("too long".into());
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .map_err(|_| format!("{number:?} is not a number"))?
    };
    let mut nanos = whole.checked_mul(scale).ok_or("too long")?;
    // The fraction, digit by digit: exact, or refused when finer than a
    // nanosecond.
    let mut unit = scale;
    for d in frac.bytes() {
        if !unit.is_multiple_of(10) {
            return Err(format!("{number} is finer than a nanosecond"));
        }
        unit /= 10;
        nanos += u128::from(d - b'0') * unit;
    }
    Ok(nanos)
}

/// `d` as [`parse_duration`] reads it back, to the millisecond (rounded
/// down): `500ms`, `29.5s`, `1h30m`, `2d3h0m1.25s` is written `2d3h1.25s`;
/// zero is `0s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, len) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)] {
        if rest >= len {
            out += &format!("{}{unit}", rest / len);
            rest %= len;
        }
    }
    let (secs, millis) = (rest / 1000, rest % 1000);
    if millis != 0 {
        let frac = format!("{millis:03}");
        out += &format!("{secs}.{}s", frac.trim_end_matches('0'));
    } else if secs != 0 {
        out += &format!("{secs}s");
    }
    out
}

/// The lifetime of `d` in whole milliseconds, rounded up (so that no
/// positive duration becomes "never"): an error unless 1 ms..=[`MAX_TTL`].
pub fn ttl_ms(d: Duration) -> Result<u32> {
    if d.is_zero() {
        return Err(Error::Invalid(
            "a TTL must be at least 1ms (0 would mean never; leave the TTL out for that)".into(),
        ));
    }
    let ms = d.as_nanos().div_ceil(1_000_000);
    u32::try_from(ms).map_err(|_| {
        Error::Invalid(format!(
            "TTL {} is over the longest, {} (2^32-1 ms)",
            format_duration(d),
            format_duration(MAX_TTL)
        ))
    })
}

/// The expiry of a put whose entry lives `d` (rounded up to whole
/// milliseconds): `Ttl { ms: Some(..), keep: false }`; an error unless
/// 1 ms..=[`MAX_TTL`].
///
/// ```
/// use std::time::Duration;
/// let cond = nfkv::Condition {
///     ttl: nfkv::expires_after(Duration::from_secs(30))?,
///     ..Default::default()
/// };
/// assert_eq!(cond.ttl.ms, Some(30_000));
/// # Ok::<(), nfkv::Error>(())
/// ```
pub fn expires_after(d: Duration) -> Result<Ttl> {
    Ok(Ttl {
        ms: Some(ttl_ms(d)?),
        keep: false,
    })
}

/// The time left of an entry from the `ttl_ms` the module reports (0:
/// never expires).
pub fn time_left(ttl_ms: u32) -> Option<Duration> {
    (ttl_ms != 0).then(|| Duration::from_millis(u64::from(ttl_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_forms_nft_and_ipset_users_type() {
        for (text, want) in [
            ("500ms", ms(500)),
            ("30s", ms(30_000)),
            ("5m", ms(300_000)),
            ("2h", ms(7_200_000)),
            ("1d", ms(86_400_000)),
            ("1h30m", ms(5_400_000)),
            ("1d2h3m4s5ms", ms(93_784_005)),
            ("1m30.5s", ms(90_500)),
            ("1.5s", ms(1500)),
            ("0.25h", ms(900_000)),
            (".5s", ms(500)),
            ("2.s", ms(2000)),
            ("30", ms(30_000)),
            ("1.5", ms(1500)),
            ("0", ms(0)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        assert_eq!(parse_duration("1.000000001s"), Ok(Duration::new(1, 1)));
        assert_eq!(parse_duration("0.5ms"), Ok(Duration::from_micros(500)));
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        for (text, says) in [
            ("", "empty"),
            ("s", "expected a number"),
            ("-5s", "expected a number"),
            ("+5s", "expected a number"),
            (" 5s", "expected a number"),
            ("5s ", "unknown unit"),
            ("5x", "unknown unit \"x\""),
            ("5sec", "unknown unit \"sec\""),
            ("5S", "unknown unit \"S\""),
            ("1h 30m", "unknown unit \"h \""),
            ("30m1h", "out of order"),
            ("1s1s", "repeated"),
            ("1h30", "30 has no unit"),
            ("1.2.3s", "not a number"),
            (".s", "not a number"),
            ("1.0000000001s", "finer than a nanosecond"),
            ("99999999999999999999999999999999999d", "too long"),
            ("999999999999999999999999d", "too long"),
            ("5é", "unknown unit"),
        ] {
            let e = parse_duration(text).unwrap_err();
            let m = e.to_string();
            assert!(
                m.contains(says) && m.contains("500ms, 30s"),
                "{text:?}: {m}"
            );
        }
    }

    #[test]
    fn formats_read_back() {
        for (d, text) in [
            (ms(0), "0s"),
            (ms(1), "1ms"),
            (ms(500), "500ms"),
            (ms(1000), "1s"),
            (ms(29_500), "29.5s"),
            (ms(60_000), "1m"),
            (ms(5_400_000), "1h30m"),
            (ms(183_601_250), "2d3h1.25s"),
            (MAX_TTL, "49d17h2m47.295s"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d), "{text}");
        }
    }

    #[test]
    fn ttls_are_1_ms_to_max_rounded_up() {
        assert_eq!(ttl_ms(ms(1)).unwrap(), 1);
        assert_eq!(ttl_ms(Duration::from_nanos(1)).unwrap(), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1500)).unwrap(), 2);
        assert_eq!(ttl_ms(MAX_TTL).unwrap(), u32::MAX);
        let zero = ttl_ms(Duration::ZERO).unwrap_err().to_string();
        assert!(zero.contains("at least 1ms"), "{zero}");
        let over = ttl_ms(MAX_TTL + Duration::from_nanos(1))
            .unwrap_err()
            .to_string();
        assert!(over.contains("over the longest, 49d17h2m47.295s"), "{over}");
        assert!(ttl_ms(Duration::MAX).is_err());
        assert_eq!(
            expires_after(ms(30_000)).unwrap(),
            Ttl {
                ms: Some(30_000),
                keep: false
            }
        );
        assert_eq!(time_left(0), None);
        assert_eq!(time_left(1500), Some(ms(1500)));
    }

    proptest! {
        #[test]
        fn any_text_parses_or_fails_without_panicking(s in "[0-9.dhms x-]{0,12}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn every_millisecond_count_round_trips(n in 0u64..=u64::from(u32::MAX) * 4) {
            prop_assert_eq!(parse_duration(&format_duration(ms(n))), Ok(ms(n)));
        }
    }
}
