//! A backend's arguments as a table, deserialized into its settings type
//! with the field at fault kept for messages.

use super::ConfigError;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use std::cell::Cell;
use std::fmt;

/// A backend's arguments: the fields of a region's table other than the
/// region's own (`capacity = 10_000`, ...).
pub type Args = toml::Table;

/// Reads `C`, the settings of `backend`, from `args`.
pub(crate) fn from_args<C: DeserializeOwned>(backend: &'static str, args: &Args) -> Result<C, ConfigError> {
    C::deserialize(ArgsDeserializer { args }).map_err(|e| match e {
        ArgError::Unknown(field) => ConfigError::UnknownField { backend, field },
        ArgError::Missing(field) => ConfigError::MissingField { backend, field },
        ArgError::Invalid { field, message } => ConfigError::InvalidValue { backend, field: Some(field), message },
        ArgError::Other(message) => ConfigError::InvalidValue { backend, field: None, message },
    })
}

/// The fields of the struct `C` (from what its derived `Deserialize`
/// passes to `deserialize_struct`), so that a message can say which
/// backend takes a misplaced field.
pub(crate) fn fields_of<C: DeserializeOwned>() -> &'static [&'static str] {
    let fields = Cell::new(&[][..]);
    let _ = C::deserialize(Introspect(&fields));
    fields.get()
}

/// A deserialization error that keeps the field it is about (serde's
/// own messages only sometimes name it).
#[derive(Debug)]
enum ArgError {
    Unknown(String),
    Missing(&'static str),
    Invalid { field: String, message: String },
    Other(String),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Unknown(field) => write!(f, "unknown field `{field}`"),
            ArgError::Missing(field) => write!(f, "missing field `{field}`"),
            ArgError::Invalid { field, message } => write!(f, "field `{field}`: {message}"),
            ArgError::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ArgError {}

impl de::Error for ArgError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ArgError::Other(msg.to_string())
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        ArgError::Unknown(field.to_owned())
    }

    fn missing_field(field: &'static str) -> Self {
        ArgError::Missing(field)
    }
}

struct ArgsDeserializer<'a> {
    args: &'a Args,
}

impl<'de> Deserializer<'de> for ArgsDeserializer<'_> {
    type Error = ArgError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ArgError> {
        visitor.visit_map(ArgsAccess { iter: self.args.iter(), value: None })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

struct ArgsAccess<'a> {
    iter: toml::map::Iter<'a, String, toml::Value>,
    value: Option<(&'a String, &'a toml::Value)>,
}

impl<'de> MapAccess<'de> for ArgsAccess<'_> {
    type Error = ArgError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, ArgError> {
        let Some((key, value)) = self.iter.next() else { return Ok(None) };
        self.value = Some((key, value));
        seed.deserialize(key.as_str().into_deserializer()).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, ArgError> {
        let (key, value) = self.value.take().ok_or_else(|| ArgError::Other("a value without its key".into()))?;
        seed.deserialize(value.clone())
            .map_err(|e| ArgError::Invalid { field: key.clone(), message: e.message().to_owned() })
    }
}

/// Records the fields a derived `Deserialize` asks for, then stops.
struct Introspect<'a>(&'a Cell<&'static [&'static str]>);

impl<'de> Deserializer<'de> for Introspect<'_> {
    type Error = ArgError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ArgError> {
        Err(ArgError::Other("not a struct".into()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ArgError> {
        self.0.set(fields);
        Err(ArgError::Other("only the fields were asked for".into()))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Two {
        size: u64,
        #[serde(default)]
        name: String,
    }

    #[test]
    fn errors_keep_their_field() {
        let mut a = Args::new();
        a.insert("size".into(), 3.into());
        assert_eq!(from_args::<Two>("two", &a), Ok(Two { size: 3, name: String::new() }));
        a.insert("name".into(), 5.into());
        assert!(matches!(
            from_args::<Two>("two", &a),
            Err(ConfigError::InvalidValue { field: Some(f), .. }) if f == "name"
        ));
        a.insert("sise".into(), 5.into());
        a.remove("name");
        assert_eq!(
            from_args::<Two>("two", &a),
            Err(ConfigError::UnknownField { backend: "two", field: "sise".into() })
        );
        assert_eq!(
            from_args::<Two>("two", &Args::new()),
            Err(ConfigError::MissingField { backend: "two", field: "size" })
        );
    }

    #[test]
    fn fields_are_read_from_the_derive() {
        assert_eq!(fields_of::<Two>(), ["size", "name"]);
    }
}
