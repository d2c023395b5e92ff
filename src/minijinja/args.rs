//! The arguments of one `cache(...)` call, checked: every mistake is a
//! template error that names the argument.

use crate::config::parse_duration;
use ::minijinja::value::{Kwargs, ValueKind, from_args};
use ::minijinja::{Error, ErrorKind, Value};
use dogpile_core::Expiration;
use std::time::Duration;

/// The options a template may pass, for the error message that lists them.
const OPTIONS: &str = "key, expiration, namespace, region or cache_empty";

/// What one `cache(...)` call asked for.
pub(super) struct CallArgs {
    /// The fragment's key, a string value.
    pub(super) key: Value,
    /// The call block's body.
    pub(super) caller: Value,
    /// `None`: the region's expiration.
    pub(super) expiration: Option<Expiration>,
    /// A string value, or `None`.
    pub(super) namespace: Option<Value>,
    /// A region name (string value), or `None` for the cache's default.
    pub(super) region: Option<Value>,
    /// `None`: the cache's default.
    pub(super) cache_empty: Option<bool>,
}

impl CallArgs {
    /// The key as text (checked to be a string when parsed).
    pub(super) fn key(&self) -> &str {
        self.key.as_str().unwrap_or_default()
    }

    /// The namespace as text.
    pub(super) fn namespace(&self) -> Option<&str> {
        self.namespace.as_ref().and_then(Value::as_str)
    }

    /// The region name as text.
    pub(super) fn region(&self) -> Option<&str> {
        self.region.as_ref().and_then(Value::as_str)
    }
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// Checks the arguments of `cache(...)`: one positional key (or `key=`), the
/// named options, and the `caller` a call block passes.
pub(super) fn parse(args: &[Value]) -> Result<CallArgs, Error> {
    let (positional, kwargs): (&[Value], Kwargs) = from_args(args)?;
    if positional.len() > 1 {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            format!(
                "cache() takes one positional argument, `key`, but was given {}; pass the options by name \
                 (expiration=\"5m\", namespace=\"...\", region=\"...\", cache_empty=false)",
                positional.len()
            ),
        ));
    }
    let mut key = positional.first().cloned();
    let mut out = CallArgs {
        key: Value::UNDEFINED,
        caller: Value::UNDEFINED,
        expiration: None,
        namespace: None,
        region: None,
        cache_empty: None,
    };
    let mut caller = None;
    for name in kwargs.args() {
        let value: Value = kwargs.peek(name)?;
        match name {
            "key" if key.is_some() => {
                return Err(Error::new(
                    ErrorKind::TooManyArguments,
                    "cache(): argument `key` is given twice (by position and by name)",
                ));
            }
            "key" => key = Some(value),
            "caller" => caller = Some(value),
            "expiration" => out.expiration = expiration(&value)?,
            "namespace" => out.namespace = optional_string("namespace", value)?,
            "region" => out.region = optional_string("region", value)?,
            "cache_empty" => match value.kind() {
                ValueKind::Bool => out.cache_empty = Some(value.is_true()),
                ValueKind::None => {}
                kind => {
                    return Err(invalid(format!("cache(): argument `cache_empty` must be true or false, not {kind}")));
                }
            },
            other => {
                return Err(Error::new(
                    ErrorKind::TooManyArguments,
                    format!("cache(): unknown argument `{other}`; expected {OPTIONS}"),
                ));
            }
        }
    }
    out.key = match key {
        None => {
            return Err(Error::new(
                ErrorKind::MissingArgument,
                "cache(): missing argument `key` (the fragment's cache key, a string such as \"sidebar:\" ~ user.id)",
            ));
        }
        Some(key) if key.kind() == ValueKind::String => key,
        Some(key) => {
            return Err(invalid(format!(
                "cache(): argument `key` must be a string, not {} (build one with ~, e.g. \"sidebar:\" ~ user.id)",
                key.kind()
            )));
        }
    };
    out.caller = match caller {
        Some(caller) if !caller.is_undefined() && !caller.is_none() => caller,
        _ => {
            return Err(Error::new(
                ErrorKind::MissingArgument,
                "cache() renders a call block and has no `caller`: write {% call cache(\"key\") %}...{% endcall %}",
            ));
        }
    };
    Ok(out)
}

/// `none` (or no argument) is no value; anything else must be a string.
fn optional_string(name: &str, value: Value) -> Result<Option<Value>, Error> {
    match value.kind() {
        ValueKind::None => Ok(None),
        ValueKind::String => Ok(Some(value)),
        kind => Err(invalid(format!("cache(): argument `{name}` must be a string, not {kind}"))),
    }
}

/// A duration string (`"90s"`, `"5m"`, `"1h 30m"`), a number of seconds, or
/// `"never"` / `-1` for a fragment that never expires; `none` keeps the
/// region's expiration.
fn expiration(value: &Value) -> Result<Option<Expiration>, Error> {
    let bad = |why: String| invalid(format!("cache(): argument `expiration` {why}"));
    match value.kind() {
        ValueKind::None => Ok(None),
        ValueKind::String => {
            let text = value.as_str().unwrap_or_default();
            if text.trim().eq_ignore_ascii_case("never") {
                return Ok(Some(Expiration::Never));
            }
            parse_duration(text).map(|d| Some(Expiration::After(d))).map_err(bad)
        }
        ValueKind::Number => {
            if let Some(secs) = value.as_i64() {
                return match secs {
                    -1 => Ok(Some(Expiration::Never)),
                    s if s >= 0 => Ok(Some(Expiration::After(Duration::from_secs(s.unsigned_abs())))),
                    s => Err(bad(format!("is {s} seconds; give seconds >= 0, or -1 for never"))),
                };
            }
            let secs = f64::try_from(value.clone()).unwrap_or(f64::NAN);
            Duration::try_from_secs_f64(secs)
                .map(|d| Some(Expiration::After(d)))
                .map_err(|_| bad(format!("is {secs} seconds; give seconds >= 0, or -1 for never")))
        }
        kind => Err(bad(format!("must be a duration such as \"5m\", a number of seconds, or \"never\", not {kind}"))),
    }
}
