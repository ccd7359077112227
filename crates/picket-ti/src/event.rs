//! Walking one JSON-lines event: every string value (nested objects and arrays too, not keys)
//! is handed to a callback, borrowed from the line when it has no escapes, without building a
//! `serde_json::Value`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Why an event line could not be matched.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not a JSON object (malformed, another JSON type, or trailing data).
    #[error("event is not a JSON object: {0}")]
    Json(#[from] serde_json::Error),
}

/// Calls `f` with every string value of the JSON object in `line`.
pub(crate) fn for_each_string<F: FnMut(&str)>(line: &str, f: &mut F) -> Result<(), EventError> {
    let mut de = serde_json::Deserializer::from_str(line);
    de.deserialize_map(Walk { f, top: true })?;
    de.end()?;
    Ok(())
}

struct Walk<'a, F> {
    f: &'a mut F,
    top: bool,
}

impl<'de, F: FnMut(&str)> DeserializeSeed<'de> for Walk<'_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(&str)> Visitor<'de> for Walk<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.top { f.write_str("a JSON object") } else { f.write_str("any JSON value") }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if self.top {
            return Err(E::invalid_type(de::Unexpected::Str(v), &self));
        }
        (self.f)(v);
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(de::Unexpected::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(de::Unexpected::Signed(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(de::Unexpected::Unsigned(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(de::Unexpected::Float(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(de::Unexpected::Unit)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.top {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        }
        while seq.next_element_seed(Walk { f: &mut *self.f, top: false })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Walk { f: &mut *self.f, top: false })?;
        }
        Ok(())
    }
}

impl<F: FnMut(&str)> Walk<'_, F> {
    fn scalar<E: de::Error>(self, u: de::Unexpected) -> Result<(), E> {
        if self.top { Err(E::invalid_type(u, &self)) } else { Ok(()) }
    }
}
