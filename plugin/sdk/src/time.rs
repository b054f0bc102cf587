//! Times as Kubernetes and Go write them: RFC 3339 timestamps
//! (`creationTimestamp`, `lastTransitionTime`) and Go durations (`1m30s`).

use crate::Value;

/// An RFC 3339 time (a JSON string) as Unix seconds; `None` when absent or
/// unreadable.
pub fn unix_seconds(value: &Value) -> Option<i64> {
    value
        .as_str()?
        .parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// Unix seconds as RFC 3339 (`2024-01-01T00:00:00Z`); empty when out of range.
pub fn rfc3339(seconds: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A Go duration (`1m`, `90s`, `1h30m`, `500ms`) in whole seconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("1m"), Some(60));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn rfc3339_round_trips_through_unix_seconds() {
        assert_eq!(unix_seconds(&json!("1970-01-01T00:01:00Z")), Some(60));
        assert_eq!(rfc3339(60), "1970-01-01T00:01:00Z");
        assert_eq!(unix_seconds(&json!("soon")), None);
        assert_eq!(unix_seconds(&Value::Null), None);
    }
}
