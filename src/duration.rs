//! Durations and timestamps as Vault writes them: Go duration strings (`"1h30m0s"`) and
//! RFC 3339 timestamps with nanoseconds (`"2026-12-03T18:07:34.123456789Z"`).

use std::time::{Duration, SystemTime};

/// The longest duration accepted: 100 years. Longer ones are refused rather than overflow
/// timestamps.
pub const MAX: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Parses a duration as Vault accepts it: a Go duration string (`"90s"`, `"1h30m"`,
/// `"1.5h"`, `"0"`), or a bare number of seconds, given as a string or a JSON number.
pub fn parse(value: &serde_json::Value) -> Result<Duration, String> {
    match value {
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(Duration::from_secs)
            .filter(|d| *d <= MAX)
            .ok_or_else(|| {
                format!("invalid duration {n}: expected whole seconds, at most 100 years")
            }),
        serde_json::Value::String(s) => parse_str(s),
        other => Err(format!(
            "invalid duration {other}: expected a string or a number"
        )),
    }
}

/// Parses a Go duration string or a bare number of seconds.
pub fn parse_str(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let invalid = || {
        format!(
            "invalid duration {text:?}: expected a number of seconds or a form like \"90s\" or \"1h30m\""
        )
    };
    if text.is_empty() {
        return Err(invalid());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        let duration = Duration::from_secs(seconds);
        return if duration <= MAX {
            Ok(duration)
        } else {
            Err(invalid())
        };
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        if number_len == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if !total.is_finite() || total > MAX.as_secs_f64() {
        return Err(invalid());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration as Go does (`"0s"`, `"1m30s"`, `"768h0m0s"`), to whole seconds.
pub fn format(duration: Duration) -> String {
    let total = duration.as_secs();
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}

/// Formats a time as RFC 3339 in UTC with nanoseconds, as Vault's timestamps are.
pub fn timestamp(time: SystemTime) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    // humantime cannot write years past 9999; such a time is shown as the last it can.
    if write!(text, "{}", humantime::format_rfc3339_nanos(time)).is_err() {
        return "9999-12-31T23:59:59.999999999Z".into();
    }
    text
}

/// Parses an RFC 3339 timestamp.
pub fn parse_timestamp(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn go_durations_parse() {
        for (text, seconds) in [
            ("0", 0),
            ("0s", 0),
            ("90s", 90),
            ("1h30m", 5400),
            ("1.5h", 5400),
            ("768h", 2_764_800),
            ("2d", 172_800),
            (" 45 ", 45),
        ] {
            assert_eq!(
                parse_str(text).unwrap(),
                Duration::from_secs(seconds),
                "{text}"
            );
        }
        assert_eq!(parse_str("1500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse(&json!(60)).unwrap(), Duration::from_secs(60));
        assert_eq!(parse(&json!("60")).unwrap(), Duration::from_secs(60));
        for bad in [
            "",
            "h",
            "1x",
            "-5s",
            "1h-",
            "s1",
            "1..5s",
            "100000000h",
            "18446744073709551615",
        ] {
            assert!(parse_str(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse(&json!(-1)).is_err());
        assert!(parse(&json!(true)).is_err());
    }

    #[test]
    fn go_durations_format() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format(Duration::from_secs(2_764_800)), "768h0m0s");
    }

    #[test]
    fn times_past_the_year_9999_do_not_panic() {
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(300_000_000_000);
        assert_eq!(timestamp(far), "9999-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn timestamps_have_nanoseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        let text = timestamp(t);
        assert_eq!(text, "2023-11-14T22:13:20.000000005Z");
        assert_eq!(parse_timestamp(&text), Some(t));
    }
}
