//! Durations as flags take them, in Go's notation because Kine's flags (and so the unit files
//! that start it) use it: a sequence of decimal numbers with units, `300ms`, `1.5s`, `2h45m`;
//! `0` alone needs no unit. Shared by the server's flags and the bench command's.

use std::time::Duration;

/// A duration, where zero or less means "off" (Kine's `--compact-interval 0`,
/// `--slow-sql-threshold 0`): those become [`Duration::ZERO`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err(format!(
            "{text:?} is not a duration such as 500ms, 5s, 1m30s or 2h"
        ));
    }
    let mut nanos: f64 = 0.0;
    let mut rest = body;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?} needs a unit: ns, us, ms, s, m or h"))?;
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("{text:?} has a malformed number"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            unit => {
                return Err(format!(
                    "{text:?} has unit {unit:?}; use ns, us, ms, s, m or h"
                ));
            }
        };
        nanos += number * scale;
        rest = &rest[unit_len..];
    }
    if negative || nanos < 1.0 {
        return Ok(Duration::ZERO);
    }
    if nanos > Duration::MAX.as_nanos() as f64 {
        return Err(format!("{text:?} is too long"));
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// A duration that must be longer than zero (an interval that cannot be turned off).
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        duration if duration.is_zero() => Err("the interval must be longer than zero".into()),
        duration => Ok(duration),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_kine_reads_them() {
        let ms = |text: &str| parse_duration(text).map(|d| d.as_millis());
        assert_eq!(ms("5m"), Ok(300_000));
        assert_eq!(ms("1h30m"), Ok(5_400_000));
        assert_eq!(ms("1.5s"), Ok(1500));
        assert_eq!(ms("300ms"), Ok(300));
        assert_eq!(ms("2h45m10s"), Ok(9_910_000));
        assert_eq!(ms("0"), Ok(0));
        assert_eq!(ms("-1s"), Ok(0), "negative durations are off, as in Kine");
        assert!(parse_duration("5").is_err(), "a number without a unit");
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_interval("0").is_err());
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
    }
}
