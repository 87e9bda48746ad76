//! JSON parsing that refuses duplicate member names at any depth.
//!
//! `serde_json::from_slice::<Value>` keeps the last of two equal keys
//! silently, so `{"sub":"alice","sub":"admin"}` would mean different things
//! to different parsers. This parser builds the same `Value` but errors on a
//! duplicate (compared after unescaping, so `"a\u0062"` equals `"ab"`).

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

const DUPLICATE: &str = "duplicate member name";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrictJsonError {
    Duplicate,
    Invalid,
}

/// Parse one JSON document, refusing duplicate keys and trailing data.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(classify)?;
    Ok(value)
}

/// Parse one JSON document that must be an object.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, StrictJsonError> {
    match parse(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err(StrictJsonError::Invalid),
    }
}

fn classify(e: serde_json::Error) -> StrictJsonError {
    // Our own custom error is the only one whose text starts like this.
    if e.to_string().starts_with(DUPLICATE) {
        StrictJsonError::Duplicate
    } else {
        StrictJsonError::Invalid
    }
}

struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Strict)?;
            if out.insert(key, value).is_some() {
                return Err(de::Error::custom(DUPLICATE));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_serde_json() {
        let text = br#"{"a":1,"b":[true,null,"x",{"c":-2.5}],"d":{"e":18446744073709551615}}"#;
        let strict = parse(text).unwrap();
        let loose: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(strict, loose);
    }

    #[test]
    fn refuses_duplicates_at_any_depth() {
        assert_eq!(parse(br#"{"a":1,"a":2}"#), Err(StrictJsonError::Duplicate));
        assert_eq!(
            parse(br#"{"x":{"a":1,"a":1}}"#),
            Err(StrictJsonError::Duplicate)
        );
        assert_eq!(
            parse(br#"[{"a":1,"a":1}]"#),
            Err(StrictJsonError::Duplicate)
        );
        // Equal after unescaping.
        assert_eq!(
            parse(br#"{"ab":1,"a\u0062":2}"#),
            Err(StrictJsonError::Duplicate)
        );
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            &b"{"[..],
            b"{\"a\":1} x",
            b"{\"a\":1}{}",
            b"",
            b"\xff",
            b"{'a':1}",
        ] {
            assert_eq!(parse(bad), Err(StrictJsonError::Invalid));
        }
        assert_eq!(parse_object(b"[1]"), Err(StrictJsonError::Invalid));
        assert_eq!(parse_object(b"\"s\""), Err(StrictJsonError::Invalid));
        assert!(parse_object(b" {\"a\":1} ").is_ok());
    }
}
