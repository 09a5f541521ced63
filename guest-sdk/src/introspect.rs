//! The field names of a serde-deserializable struct, read without a value: a
//! deserializer that records the `fields` serde passes to `deserialize_struct`
//! and then stops. Types that are not structs declare no inputs.

use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::fmt;

#[derive(Debug)]
struct Stop(Vec<String>);

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field introspection")
    }
}
impl std::error::Error for Stop {}
impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop(Vec::new())
    }
}

struct FieldNames;

impl<'de> Deserializer<'de> for FieldNames {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop(Vec::new()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        Err(Stop(fields.iter().map(|f| f.to_string()).collect()))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The field names of `T` if it is a struct, else none.
pub fn field_names<'de, T: Deserialize<'de>>() -> Vec<String> {
    match T::deserialize(FieldNames) {
        Ok(_) => Vec::new(),
        Err(Stop(fields)) => fields,
    }
}
