//! JSON text shared without copies.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// Valid JSON text (checked once, when it enters the host), shared by reference
/// count: cloning never copies the text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Json(Arc<str>);

impl Json {
    /// Check that `text` is valid JSON and wrap it.
    pub fn parse(text: impl Into<Arc<str>>) -> Result<Json, serde_json::Error> {
        let text = text.into();
        serde_json::from_str::<serde::de::IgnoredAny>(&text)?;
        Ok(Json(text))
    }

    /// Wrap text already known to be valid JSON (read back from a verified
    /// checkpoint payload), without parsing it again.
    pub(crate) fn from_verified(text: &str) -> Json {
        Json(text.into())
    }

    /// Encode a serde value.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Json {
        // Serializing plain data to a string only fails for maps with non-string
        // keys, which the host never builds.
        Json(serde_json::to_string(value).expect("host values encode as JSON").into())
    }

    /// JSON `null`.
    pub fn null() -> Json {
        Json(Arc::from("null"))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Decode into a [`serde_json::Value`].
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).expect("Json holds valid JSON text")
    }

    /// True for JSON `null`.
    pub fn is_null(&self) -> bool {
        self.0.trim() == "null"
    }

    /// True if the text is a JSON object.
    pub fn is_object(&self) -> bool {
        self.0.trim_start().starts_with('{')
    }

    /// Size of the text in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for empty text (never the case for valid JSON).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Json {
        Json::encode(&value)
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() > 200 {
            write!(f, "Json({}... {} bytes)", &self.0[..self.0.floor_char_boundary(200)], self.0.len())
        } else {
            write!(f, "Json({})", self.0)
        }
    }
}

/// Stored as its text, so binary encodings keep it verbatim.
impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Loading checks the text again: a stored value is never trusted to be JSON.
impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        let text = String::deserialize(deserializer)?;
        Json::parse(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_invalid_text() {
        assert!(Json::parse("{\"a\":").is_err());
        assert!(Json::parse("nope").is_err());
        assert!(Json::parse(" {\"a\": [1, 2]} ").unwrap().is_object());
    }

    #[test]
    fn clones_share_the_text() {
        let a = Json::parse("[1,2,3]").unwrap();
        let b = a.clone();
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
    }
}
