//! JSON text, validated once when it enters the host, shared without copies.
//!
//! Every value that crosses the WIT boundary, the CLI or the checkpoint loader
//! becomes a [`Json`] through [`Json::parse`], which accepts exactly the text
//! every later use accepts: valid JSON, nested at most [`MAX_DEPTH`] levels,
//! numbers that are finite doubles, strings without lone surrogates. Later
//! decoding ([`Json::to_value`]) therefore cannot fail on it.

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// Deepest nesting of arrays and objects accepted in a value (documented in
/// docs/security.md). serde_json's own limit is 128; host-built values (group
/// results, task inputs) add at most one level per flow nesting level, and
/// flows nest at most [`crate::model::flow::MAX_DEPTH`] levels, so every value
/// the host holds stays decodable.
pub const MAX_DEPTH: usize = 64;

/// Valid JSON text (checked once, when it enters the host), shared by reference
/// count: cloning never copies the text.
#[derive(Clone)]
pub struct Json(Repr);

/// Where the text lives.
#[derive(Clone)]
enum Repr {
    /// Its own allocation.
    Owned(Arc<str>),
    /// A slice of a larger buffer it shares (a checkpoint payload read once):
    /// invariant, valid UTF-8, because it is only ever made from a `&str`.
    Shared(bytes::Bytes),
}

impl From<Arc<str>> for Repr {
    fn from(text: Arc<str>) -> Repr {
        Repr::Owned(text)
    }
}

impl PartialEq for Json {
    /// Equal text. A value compared with a clone of itself (the same
    /// allocation) is not read: checkpoints compare whole channels this way.
    fn eq(&self, other: &Json) -> bool {
        let (a, b) = (self.as_str(), other.as_str());
        (std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()) || a == b
    }
}

impl Eq for Json {}

impl std::hash::Hash for Json {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

/// Why text was refused as JSON.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(serde_json::Error);

impl JsonError {
    /// The underlying parser error (line and column).
    pub fn inner(&self) -> &serde_json::Error {
        &self.0
    }
}

/// Walks a value without building it; refuses what serde_json cannot decode
/// and nesting deeper than `max`.
#[derive(Clone, Copy)]
struct Check {
    depth: usize,
    max: usize,
}

impl Check {
    fn enter<E: serde::de::Error>(self) -> Result<Check, E> {
        if self.depth >= self.max {
            return Err(E::custom(format_args!(
                "JSON nested deeper than {} levels (the bound json::MAX_DEPTH{})",
                self.max,
                if self.max == MAX_DEPTH { "" } else { ", less one for a list item" }
            )));
        }
        Ok(Check { depth: self.depth + 1, max: self.max })
    }
}

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() { Ok(()) } else { Err(E::custom("number out of range")) }
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        while map.next_key_seed(inner)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// True if `text` lies inside `owner`'s bytes.
fn within(owner: &bytes::Bytes, text: &str) -> bool {
    let (o, t) = (owner.as_ptr() as usize, text.as_ptr() as usize);
    t >= o && t + text.len() <= o + owner.len()
}

fn check(text: &str, max: usize) -> Result<(), JsonError> {
    let mut de = serde_json::Deserializer::from_str(text);
    Check { depth: 0, max }.deserialize(&mut de).map_err(JsonError)?;
    de.end().map_err(JsonError)
}

impl Json {
    /// Check that `text` is JSON the host can hold (see the module docs) and
    /// wrap it.
    pub fn parse(text: impl Into<Arc<str>>) -> Result<Json, JsonError> {
        let text = text.into();
        check(&text, MAX_DEPTH)?;
        Ok(Json(Repr::Owned(text)))
    }

    /// [`Json::parse`] for an item going into a list: one level less, so the
    /// list stays within [`MAX_DEPTH`].
    pub fn parse_item(text: impl Into<Arc<str>>) -> Result<Json, JsonError> {
        let text = text.into();
        check(&text, MAX_DEPTH - 1)?;
        Ok(Json(Repr::Owned(text)))
    }

    /// [`Json::parse`] for a value read back from a checkpoint that is not
    /// trusted: host-built values (group results, inputs) may nest one level
    /// per flow nesting level deeper than a guest's.
    pub fn parse_stored(text: impl Into<Arc<str>>) -> Result<Json, JsonError> {
        let text = text.into();
        check(&text, MAX_DEPTH + crate::model::flow::MAX_DEPTH + 1)?;
        Ok(Json(Repr::Owned(text)))
    }

    /// Wrap text read back from a checkpoint whose signature verified: it was
    /// checked by [`Json::parse`] when it entered the host that signed it.
    pub(crate) fn trusted(text: &str) -> Json {
        Json(Repr::Owned(text.into()))
    }

    /// [`Json::trusted`] for `text` inside `owner` (the payload it was read
    /// from): the value shares the buffer instead of copying it.
    pub(crate) fn trusted_in(owner: Option<&bytes::Bytes>, text: &str) -> Json {
        match owner.filter(|o| within(o, text)) {
            Some(o) => Json(Repr::Shared(o.slice_ref(text.as_bytes()))),
            None => Json::trusted(text),
        }
    }

    /// [`Json::parse_stored`] for `text` inside `owner`, sharing it.
    pub(crate) fn parse_stored_in(owner: Option<&bytes::Bytes>, text: &str) -> Result<Json, JsonError> {
        match owner.filter(|o| within(o, text)) {
            Some(o) => {
                check(text, MAX_DEPTH + crate::model::flow::MAX_DEPTH + 1)?;
                Ok(Json(Repr::Shared(o.slice_ref(text.as_bytes()))))
            }
            None => Json::parse_stored(text),
        }
    }

    /// Encode a serde value built by the host.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Json {
        match serde_json::to_string(value) {
            Ok(text) => Json(Repr::Owned(text.into())),
            // Serializing fails only for maps with non-string keys or a
            // failing Serialize impl; the host builds neither.
            Err(e) => {
                tracing::error!("a host value did not encode as JSON: {e}");
                Json::null()
            }
        }
    }

    /// An object of `fields` (keys encoded as JSON strings, values verbatim).
    pub fn object<'a>(fields: impl IntoIterator<Item = (&'a str, &'a Json)>) -> Json {
        let mut text = String::from("{");
        for (i, (k, v)) in fields.into_iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            push_string(&mut text, k);
            text.push(':');
            text.push_str(v.as_str());
        }
        text.push('}');
        Json(Repr::Owned(text.into()))
    }

    /// The list `[item]`.
    pub fn list_of(item: &Json) -> Json {
        Json(Repr::Owned(format!("[{item}]").into()))
    }

    /// JSON `null`.
    pub fn null() -> Json {
        Json(Repr::Owned(Arc::from("null")))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Owned(t) => t,
            // SAFETY: a shared slice is only ever made from a `&str` (see
            // `Repr::Shared`), so its bytes are valid UTF-8.
            Repr::Shared(b) => unsafe { std::str::from_utf8_unchecked(b) },
        }
    }

    /// Decode into a [`serde_json::Value`]. Every `Json` decodes (see the
    /// module docs); the error is kept for the type's sake.
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.as_str())
    }

    /// True for JSON `null`.
    pub fn is_null(&self) -> bool {
        self.as_str().trim() == "null"
    }

    /// True if the text is a JSON object.
    pub fn is_object(&self) -> bool {
        self.as_str().trim_start().starts_with('{')
    }

    /// True if the text is a JSON array.
    pub fn is_array(&self) -> bool {
        self.as_str().trim_start().starts_with('[')
    }

    /// Size of the text in bytes.
    pub fn len(&self) -> usize {
        self.as_str().len()
    }

    /// True for empty text (never the case for valid JSON).
    pub fn is_empty(&self) -> bool {
        self.as_str().is_empty()
    }

    /// If this is an array: the array with `item` added at the end (or the
    /// front), and its new length. One copy of the text, no decoding.
    pub fn with_item(&self, item: &Json, front: bool) -> Option<(Json, usize)> {
        let text = self.as_str().trim();
        let inner = text.strip_prefix('[')?.strip_suffix(']')?;
        let len = array_len(inner);
        let inner = if len == 0 { "" } else { inner };
        let mut out = String::with_capacity(text.len() + item.len() + 1);
        out.push('[');
        if front {
            out.push_str(item.as_str());
            if len > 0 {
                out.push(',');
            }
            out.push_str(inner);
        } else {
            out.push_str(inner);
            if len > 0 {
                out.push(',');
            }
            out.push_str(item.as_str());
        }
        out.push(']');
        Some((Json(Repr::Owned(out.into())), len + 1))
    }
}

/// Append `s` to `out` as a JSON string.
fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The number of elements of the array whose text between the brackets is
/// `inner` (valid JSON): top-level commas outside strings, plus one.
fn array_len(inner: &str) -> usize {
    let (mut depth, mut in_string, mut escaped, mut commas) = (0usize, false, false, 0usize);
    let mut any = false;
    for b in inner.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => commas += 1,
            _ => {}
        }
        if !b.is_ascii_whitespace() {
            any = true;
        }
    }
    if any { commas + 1 } else { 0 }
}

impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Json {
        Json::encode(&value)
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.as_str();
        if text.len() > 200 {
            write!(f, "Json({}... {} bytes)", &text[..text.floor_char_boundary(200)], text.len())
        } else {
            write!(f, "Json({text})")
        }
    }
}

/// Stored as its text, so binary encodings keep it verbatim.
impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Loading checks the text again: a stored value is never trusted to be JSON.
impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Json::parse(text.as_ref()).map_err(serde::de::Error::custom)
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
    fn rejects_what_serde_json_values_cannot_hold() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let err = Json::parse(deep).unwrap_err().to_string();
        assert!(err.contains("MAX_DEPTH"), "{err}");
        assert!(Json::parse(format!("{}{}", "[".repeat(64), "]".repeat(64))).is_ok());
        assert!(Json::parse(format!("{}{}", "[".repeat(65), "]".repeat(65))).is_err());
        assert!(Json::parse_item(format!("{}{}", "[".repeat(64), "]".repeat(64))).is_err());
        assert!(Json::parse("1e400").is_err());
        assert!(Json::parse("[-1e999]").is_err());
        assert!(Json::parse(r#""\ud800""#).is_err());
        assert!(Json::parse(r#"{"\udc00":1}"#).is_err());
        assert!(Json::parse(r#""\ud83d\ude00""#).is_ok());
        assert!(Json::parse("123456789012345678901234567890").is_ok());
    }

    #[test]
    fn clones_share_the_text() {
        let a = Json::parse("[1,2,3]").unwrap();
        let b = a.clone();
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
    }

    #[test]
    fn items_are_spliced_into_lists() {
        let one = Json::parse("1").unwrap();
        let cases = [
            ("[]", false, "[1]", 1),
            (" [ ] ", true, "[1]", 1),
            ("[2]", false, "[2,1]", 2),
            ("[2,[3,4],\"a,]\\\"\",{\"k\":[5]}]", true, "[1,2,[3,4],\"a,]\\\"\",{\"k\":[5]}]", 5),
        ];
        for (list, front, expected, len) in cases {
            let (out, n) = Json::parse(list).unwrap().with_item(&one, front).unwrap();
            assert_eq!((out.as_str(), n), (expected, len));
            assert!(Json::parse(out.as_str()).is_ok());
        }
        assert!(Json::parse("{}").unwrap().with_item(&one, false).is_none());
        assert!(Json::parse("\"[x]\"").unwrap().with_item(&one, false).is_none());
    }

    #[test]
    fn objects_escape_their_keys() {
        let v = Json::parse("[1]").unwrap();
        let o = Json::object([("a\"b\n", &v), ("c", &v)]);
        assert_eq!(o.to_value().unwrap(), serde_json::json!({"a\"b\n": [1], "c": [1]}));
    }
}
