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
    fields.into_iter().map(|(k, v)| (k, Json::parse(v.get()).expect("a raw JSON value is JSON"))).collect()
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
        fields.insert(k, Json::parse(v.get()).expect("a raw JSON value is JSON"));
    }
    let mut text = String::with_capacity(2 + fields.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>());
    text.push('{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&serde_json::to_string(k).expect("a string encodes"));
        text.push(':');
        text.push_str(v.as_str());
    }
    text.push('}');
    Json::parse(text).expect("an object of JSON values is JSON")
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
        assert_eq!(input.to_value(), serde_json::json!({"a":1,"b":3,"c":4}));
    }

    #[test]
    fn non_object_explicit_input_replaces() {
        let c = MemoryChannel::default();
        let input = resolve(&["a".into()], Some(&j("[1]")), &c, &BTreeMap::new());
        assert_eq!(input.as_str(), "[1]");
    }
}
