//! Parsing configuration values (durations, expirations) and TOML files
//! with line numbers in every error.

use super::{FieldSeed, Item, Partial, RegionConfig};
use dogpile_core::Expiration;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};
use std::fmt;
use std::time::Duration;
use toml::de::{DeTable, DeValue};

/// Parses a duration as written in configuration: `"90s"`, `"5m"`, `"1h"`,
/// `"1h 30m"`, `"250ms"`, or a plain number of seconds (`"90"`).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(dogpile::parse_duration("5m"), Ok(Duration::from_secs(300)));
/// assert_eq!(dogpile::parse_duration("90"), Ok(Duration::from_secs(90)));
/// assert!(dogpile::parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t).map_err(|e| {
        format!(
            "invalid duration `{text}` ({e}); write a number of seconds or a duration such as \"90s\", \"5m\", \"1h\""
        )
    })
}

fn seconds<E: de::Error>(secs: f64) -> Result<Duration, E> {
    Duration::try_from_secs_f64(secs).map_err(|_| E::custom(format!("invalid duration {secs}: expected seconds >= 0")))
}

/// A duration: seconds (integer or float) or a duration string.
pub(crate) struct DurationValue(pub(crate) Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor { never: false }).map(|e| match e {
            Expiration::After(d) => DurationValue(d),
            Expiration::Never => DurationValue(Duration::MAX),
        })
    }
}

/// An expiration: a duration, or `"never"` / `-1`.
pub(crate) struct ExpirationValue(pub(crate) Expiration);

impl<'de> Deserialize<'de> for ExpirationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor { never: true }).map(ExpirationValue)
    }
}

struct DurationVisitor {
    never: bool,
}

impl Visitor<'_> for DurationVisitor {
    type Value = Expiration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number of seconds or a duration such as \"90s\", \"5m\", \"1h\"")?;
        if self.never {
            f.write_str(", or \"never\" (also -1)")?;
        }
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Expiration, E> {
        Ok(Expiration::After(Duration::from_secs(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Expiration, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) if v == -1 && self.never => Ok(Expiration::Never),
            Err(_) => Err(E::custom(format!(
                "invalid duration {v}: expected seconds >= 0{}",
                if self.never { " (or -1 for never)" } else { "" }
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Expiration, E> {
        if v == -1.0 && self.never {
            return Ok(Expiration::Never);
        }
        seconds(v).map(Expiration::After)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Expiration, E> {
        if self.never && (v.trim() == "never" || v.trim() == "-1") {
            return Ok(Expiration::Never);
        }
        parse_duration(v).map(Expiration::After).map_err(E::custom)
    }
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

/// Parses a TOML document of `[regions.<name>]` tables into each region's
/// name, settings and the line of its table. Every problem is reported,
/// each naming the region, the field and the line.
pub(crate) fn from_toml(text: &str) -> Result<(Vec<Item>, Vec<String>), String> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        let messages: Vec<String> = errors.iter().map(|e| syntax_error(text, doc.get_ref(), e)).collect();
        return Err(messages.join("\n"));
    }
    let mut problems = Vec::new();
    let mut items = Vec::new();
    for (key, value) in doc.get_ref() {
        let line = line_of(text, key.span().start);
        if key.get_ref() != "regions" {
            problems.push(format!(
                "unknown top-level key `{}` (line {line}); region settings go in [regions.<name>] tables",
                key.get_ref()
            ));
            continue;
        }
        let Some(regions) = value.get_ref().as_table() else {
            problems.push(format!("`regions` (line {line}) must be a table of [regions.<name>] tables"));
            continue;
        };
        for (name, settings) in regions {
            let name_line = line_of(text, name.span().start);
            match region(text, name.get_ref(), settings.get_ref()) {
                Ok(cfg) => items.push((name.get_ref().to_string(), cfg, Some(name_line))),
                Err(mut errors) => {
                    // Still checked for being declared (with default settings).
                    items.push((name.get_ref().to_string(), RegionConfig::default(), Some(name_line)));
                    problems.append(&mut errors);
                }
            }
        }
    }
    Ok((items, problems))
}

/// A TOML syntax error; a key given twice names its region and field
/// (from what the parser recovered) instead of only "duplicate key".
fn syntax_error(text: &str, doc: &DeTable<'_>, e: &toml::de::Error) -> String {
    let span = e.span();
    if e.message().starts_with("duplicate key")
        && let Some(span) = &span
        && let Some(message) = duplicate_key(text, doc, span.clone())
    {
        return message;
    }
    let at = span.map(|s| format!(" (line {})", line_of(text, s.start))).unwrap_or_default();
    format!("invalid TOML{at}: {}", e.message())
}

/// Where the duplicate key at `span` is: a field given twice in one region,
/// or a region's table given twice. `None` when it is anywhere else.
fn duplicate_key(text: &str, doc: &DeTable<'_>, span: std::ops::Range<usize>) -> Option<String> {
    let key = text.get(span.clone())?.trim().trim_matches(|c| c == '"' || c == '\'');
    let line = line_of(text, span.start);
    let (_, regions) = doc.iter().find(|(k, _)| k.get_ref() == "regions")?;
    let regions = regions.get_ref().as_table()?;
    // The region holding the first occurrence: of those that have the key,
    // the last one whose name comes before the duplicate.
    let field = regions
        .iter()
        .filter(|(name, _)| name.span().start < span.start)
        .filter_map(|(name, settings)| {
            let (first, _) = settings.get_ref().as_table()?.iter().find(|(f, _)| f.get_ref() == key)?;
            Some((name, first))
        })
        .max_by_key(|(name, _)| name.span().start);
    // The parser may keep either occurrence: name the other line only when
    // it is known.
    let first = |at: usize| {
        let first = line_of(text, at);
        if first < line { format!(" (first on line {first})") } else { String::new() }
    };
    if let Some((name, field)) = field {
        return Some(format!(
            "region `{}`, field `{key}` (line {line}): given twice{}; keep one of them",
            name.get_ref(),
            first(field.span().start)
        ));
    }
    let (name, _) = regions.iter().find(|(name, _)| name.get_ref() == key)?;
    Some(format!(
        "region `{key}` (line {line}): its table is given twice{}; merge them into one",
        first(name.span().start)
    ))
}

fn region(text: &str, name: &str, settings: &DeValue<'_>) -> Result<RegionConfig, Vec<String>> {
    let Some(table) = settings.as_table() else {
        return Err(vec![format!("region `{name}`: expected a table of settings such as `backend = \"memory\"`")]);
    };
    let mut partial = Partial::default();
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (field, value) in table {
        let line = line_of(text, field.span().start);
        // A field that is not the region's own is an argument of its
        // backend, checked by the backend's settings type in `finish`.
        let field = field.get_ref().as_ref();
        lines.push((field.to_owned(), line));
        let seed = FieldSeed { field, partial: &mut partial };
        if let Err(e) = seed.deserialize(value.clone().into_deserializer()) {
            errors.push(format!("region `{name}`, field `{field}` (line {line}): {}", e.message()));
        }
    }
    match partial.finish() {
        Ok(cfg) if errors.is_empty() => Ok(cfg),
        Ok(_) => Err(errors),
        Err(e) => {
            let at = lines.iter().find(|(f, _)| *f == e.field).map(|(_, l)| format!(" (line {l})")).unwrap_or_default();
            errors.push(format!("region `{name}`, field `{}`{at}: {}", e.field, e.message));
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 250ms "), Ok(Duration::from_millis(250)));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("").is_err());
    }

    fn toml_error(text: &str) -> String {
        from_toml(text).expect_err("a syntax error")
    }

    #[test]
    fn duplicate_keys_name_their_region_and_field() {
        let two_regions =
            "[regions.a]\nbackend = \"memory\"\n[regions.b]\nbackend = \"memory\"\n\"backend\" = \"null\"\n";
        assert_eq!(
            toml_error(two_regions),
            "region `b`, field `backend` (line 5): given twice (first on line 4); keep one of them"
        );
        let dotted = "[regions]\nc.expiration = 5\nc.expiration = 6\n";
        assert_eq!(
            toml_error(dotted),
            "region `c`, field `expiration` (line 3): given twice (first on line 2); keep one of them"
        );
        let table_twice = "[regions.a]\nbackend = \"memory\"\n\n[regions.a]\nexpiration = 5\n";
        assert_eq!(toml_error(table_twice), "region `a` (line 4): its table is given twice; merge them into one");
        let elsewhere = "x = 1\nx = 2\n";
        assert_eq!(toml_error(elsewhere), "invalid TOML (line 2): duplicate key");
    }

    #[test]
    fn lines() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
