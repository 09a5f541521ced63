//! Automatic data flow: the input object of one execution.

use super::context::result_key;
use crate::channel::Channel;
use crate::json::Json;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// The fields of the run's `--input` object (empty if it is not an object).
pub fn run_input_fields(input: &Json) -> BTreeMap<String, Json> {
    let Ok(fields) = serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(input.as_str()) else {
        return BTreeMap::new();
    };
    // A part of a checked value is itself checked JSON: `parse` cannot refuse it.
    fields.into_iter().filter_map(|(k, v)| Some((k, Json::parse(v.get()).ok()?))).collect()
}

/// Build an execution's input: each declared input from `<name>.__result__`,
/// else the channel key `<name>`, else the run input's field `<name>`; then the
/// explicit input's fields on top (explicit wins). An explicit input that is not
/// an object replaces the whole input.
pub fn resolve(
    declared: &[String],
    explicit: Option<&Json>,
    channel: &dyn Channel,
    run_input: &BTreeMap<String, Json>,
) -> Json {
    if let Some(e) = explicit {
        if !e.is_object() {
            return e.clone();
        }
        if declared.is_empty() {
            return e.clone();
        }
    }
    let mut fields: BTreeMap<&str, Json> = BTreeMap::new();
    for name in declared {
        let value =
            channel.get(&result_key(name)).or_else(|| channel.get(name)).or_else(|| run_input.get(name).cloned());
        if let Some(v) = value {
            fields.insert(name, v);
        }
    }
    let explicit_fields: BTreeMap<String, Box<RawValue>> = match explicit {
        Some(e) => serde_json::from_str(e.as_str()).unwrap_or_default(),
        None => BTreeMap::new(),
    };
    for (k, v) in &explicit_fields {
        if let Ok(v) = Json::parse(v.get()) {
            fields.insert(k, v);
        }
    }
    Json::object(fields.iter().map(|(k, v)| (*k, v)))
}

/// For a task that refused its input: which of its declared inputs the host
/// did not find, and where it looked (empty if it found them all).
pub fn missing_note(declared: &[String], input: &Json) -> String {
    let present: BTreeMap<String, serde::de::IgnoredAny> = serde_json::from_str(input.as_str()).unwrap_or_default();
    let missing: Vec<&String> = declared.iter().filter(|d| !present.contains_key(*d)).collect();
    missing
        .iter()
        .map(|name| {
            format!(
                "; declared input '{name}' was not found: the host looked for channel key '{}', channel key '{name}' \
                 and field '{name}' of the run input",
                result_key(name)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::MemoryChannel;

    fn j(s: &str) -> Json {
        Json::parse(s).unwrap()
    }

    #[test]
    fn result_beats_key_beats_run_input_and_explicit_beats_all() {
        let c = MemoryChannel::default();
        c.set("a.__result__", j("1"));
        c.set("a", j("2"));
        c.set("b", j("3"));
        let run = run_input_fields(&j(r#"{"a":9,"b":9,"c":9,"d":9}"#));
        let declared: Vec<String> = ["a", "b", "c", "e"].iter().map(|s| s.to_string()).collect();
        let input = resolve(&declared, Some(&j(r#"{"c":4}"#)), &c, &run);
        assert_eq!(input.to_value().unwrap(), serde_json::json!({"a":1,"b":3,"c":4}));
    }

    #[test]
    fn non_object_explicit_input_replaces() {
        let c = MemoryChannel::default();
        let input = resolve(&["a".into()], Some(&j("[1]")), &c, &BTreeMap::new());
        assert_eq!(input.as_str(), "[1]");
    }
}
