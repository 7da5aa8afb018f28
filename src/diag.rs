//! Diagnostics for files operators write: positioned errors and the one duration syntax.
//!
//! Every error in a configuration or policy file reads `file:line:col: what is wrong and how to fix
//! it` ([`ConfigError`]); YAML syntax and shape errors get the same form ([`yaml_error`]). Durations
//! everywhere (configuration, policies, the API, the probe's flags) are read by [`parse_duration`].

use std::fmt;
use std::time::Duration;

/// A configuration error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Every error found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A YAML syntax or shape error, positioned, with a hint where one helps.
pub fn yaml_error(source: &str, e: &serde_saphyr::Error) -> ConfigError {
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let raw = e.without_snippet().to_string();
    // The library appends " at line L, column C"; the position is printed in front.
    let message = match raw.rfind(" at line ") {
        Some(i) => raw[..i].to_string(),
        None => raw,
    };
    ConfigError {
        file: source.into(),
        line,
        column,
        message: hint(&message),
    }
}

/// Adds a way out to the library's messages where it has none.
fn hint(message: &str) -> String {
    if message.starts_with("unknown field") {
        format!("{message}; remove it or check its spelling")
    } else if message.starts_with("missing field") {
        format!("{message}; add it")
    } else {
        message.to_string()
    }
}

/// A default value in a file: it has no position of its own.
pub fn unplaced<T>(v: T) -> serde_saphyr::Spanned<T> {
    serde_saphyr::Spanned::new(
        v,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

/// A positive duration written in a file, or an error at its position that shows how to write one
/// (`example`, e.g. `10s`).
pub fn positive_duration(
    v: &serde_saphyr::Spanned<String>,
    what: &str,
    example: &str,
    err: &mut dyn FnMut(&serde_saphyr::Location, String),
) -> Option<Duration> {
    let d = parse_duration(&v.value).filter(|d| !d.is_zero());
    if d.is_none() {
        err(
            &v.referenced,
            format!(
                "{what} {:?} is not a duration; write e.g. {example}",
                v.value
            ),
        );
    }
    d
}

/// `250ms`, `90s`, `10m`, `24h`, `7d`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_every_unit_and_refuse_the_rest() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 90s "), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        for bad in [
            "",
            "s",
            "1.5s",
            "-1s",
            "10 m",
            "1w",
            "18446744073709551615m",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
