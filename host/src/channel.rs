//! The channel: the workflow's shared key-value store of JSON values.
//!
//! [`MemoryChannel`] is the embedded store of a run. Every task execution and
//! every parallel branch works on an [`Overlay`] over the channel it started
//! from: reads see the overlay's writes first, then the base; the writes reach
//! the base only through [`Overlay::commit_into`], which the engine calls when
//! the task (or branch) succeeds. A failed attempt therefore leaves no trace,
//! and branches of a parallel group never see each other's writes.

use crate::json::Json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Why a channel operation was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChannelError {
    /// `append` / `prepend` on a value that is not a list.
    #[error("channel key '{0}' holds a value that is not a list")]
    NotAList(String),
    /// `atomic-add` on a value that is not a number.
    #[error("channel key '{0}' holds a value that is not a number")]
    NotANumber(String),
    /// `atomic-add` produced a value JSON cannot hold.
    #[error("atomic-add on channel key '{0}' does not give a finite number")]
    NotFinite(String),
}

/// A key-value store of JSON values. Methods take `&self`: implementations
/// synchronise internally, so one channel can be the base of several branches.
pub trait Channel: Send + Sync {
    /// The value under `key`.
    fn get(&self, key: &str) -> Option<Json>;
    /// Store `value` under `key`.
    fn set(&self, key: &str, value: Json);
    /// Remove `key`; true if it existed.
    fn delete(&self, key: &str) -> bool;
    /// Every key, sorted.
    fn keys(&self) -> Vec<String>;
    /// Add `amount` to the number under `key` (missing counts as 0).
    fn add(&self, key: &str, amount: f64) -> Result<f64, ChannelError>;
    /// Bytes held (keys and values); an overlay counts its writes on top of its
    /// base, so it may overestimate.
    fn size_bytes(&self) -> u64;

    /// True if `key` holds a value.
    fn exists(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Insert `value` at the end (or the front) of the list under `key`; the new
    /// length. A missing key starts an empty list.
    fn push(&self, key: &str, value: Json, front: bool) -> Result<u32, ChannelError> {
        let list = pushed(key, self.get(key), value, front)?;
        let len = list.len() as u32;
        self.set(key, Json::from(serde_json::Value::Array(list)));
        Ok(len)
    }
}

fn pushed(key: &str, current: Option<Json>, value: Json, front: bool) -> Result<Vec<serde_json::Value>, ChannelError> {
    let mut list = match current.map(|c| c.to_value()) {
        None => Vec::new(),
        Some(serde_json::Value::Array(items)) => items,
        Some(_) => return Err(ChannelError::NotAList(key.to_string())),
    };
    let value = value.to_value();
    if front {
        list.insert(0, value)
    } else {
        list.push(value)
    }
    Ok(list)
}

/// `current + amount` as JSON: an integer when the sum is integral and fits.
fn added(key: &str, current: Option<&Json>, amount: f64) -> Result<(f64, Json), ChannelError> {
    let base = match current {
        None => 0.0,
        Some(v) => v.as_str().trim().parse::<f64>().map_err(|_| ChannelError::NotANumber(key.to_string()))?,
    };
    let sum = base + amount;
    if !sum.is_finite() {
        return Err(ChannelError::NotFinite(key.to_string()));
    }
    let json = if sum.fract() == 0.0 && sum.abs() < 9.0e15 { Json::encode(&(sum as i64)) } else { Json::encode(&sum) };
    Ok((sum, json))
}

/// The in-memory channel of a run.
#[derive(Default)]
pub struct MemoryChannel {
    values: Mutex<Entries>,
}

/// The entries and their total size, kept together under one lock.
#[derive(Default)]
struct Entries {
    map: BTreeMap<String, Json>,
    bytes: u64,
}

impl Entries {
    fn insert(&mut self, key: &str, value: Json) {
        self.bytes += (key.len() + value.len()) as u64;
        if let Some(old) = self.map.insert(key.to_string(), value) {
            self.bytes -= (key.len() + old.len()) as u64;
        }
    }
    fn remove(&mut self, key: &str) -> bool {
        match self.map.remove(key) {
            Some(old) => {
                self.bytes -= (key.len() + old.len()) as u64;
                true
            }
            None => false,
        }
    }
}

impl MemoryChannel {
    /// A channel holding `values`.
    pub fn from_map(values: BTreeMap<String, Json>) -> MemoryChannel {
        let bytes = values.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        MemoryChannel { values: Mutex::new(Entries { map: values, bytes }) }
    }

    /// A copy of every entry (values are shared, not copied).
    pub fn snapshot(&self) -> BTreeMap<String, Json> {
        self.lock().map.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding this lock cannot leave the entries half-updated:
        // no operation panics between its map change and its size change.
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Channel for MemoryChannel {
    fn get(&self, key: &str) -> Option<Json> {
        self.lock().map.get(key).cloned()
    }
    fn set(&self, key: &str, value: Json) {
        self.lock().insert(key, value);
    }
    fn delete(&self, key: &str) -> bool {
        self.lock().remove(key)
    }
    fn keys(&self) -> Vec<String> {
        self.lock().map.keys().cloned().collect()
    }
    fn add(&self, key: &str, amount: f64) -> Result<f64, ChannelError> {
        let mut values = self.lock();
        let (sum, json) = added(key, values.map.get(key), amount)?;
        values.insert(key, json);
        Ok(sum)
    }
    fn size_bytes(&self) -> u64 {
        self.lock().bytes
    }
}

/// One pending write of an [`Overlay`].
#[derive(Debug, Clone)]
enum Write {
    Set(Json),
    Delete,
    /// An `atomic-add` over the base value: committed as an addition, so the
    /// additions of parallel branches sum.
    Add {
        delta: f64,
        value: Json,
    },
}

/// Writes kept apart from a base channel until committed.
pub struct Overlay {
    base: Arc<dyn Channel>,
    writes: Mutex<BTreeMap<String, Write>>,
}

impl Overlay {
    /// An empty overlay over `base`.
    pub fn new(base: Arc<dyn Channel>) -> Overlay {
        Overlay { base, writes: Mutex::new(BTreeMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Write>> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply the writes to `target` in key order. Additions are applied as
    /// additions; if the target no longer holds a number there, the overlay's
    /// value is stored instead.
    pub fn commit_into(&self, target: &dyn Channel) {
        let writes = std::mem::take(&mut *self.lock());
        for (key, write) in writes {
            match write {
                Write::Set(v) => target.set(&key, v),
                Write::Delete => {
                    target.delete(&key);
                }
                Write::Add { delta, value } => {
                    if target.add(&key, delta).is_err() {
                        target.set(&key, value);
                    }
                }
            }
        }
    }

    /// Total bytes of the values written so far.
    pub fn written_bytes(&self) -> usize {
        self.lock()
            .iter()
            .map(|(k, w)| {
                k.len()
                    + match w {
                        Write::Set(v) | Write::Add { value: v, .. } => v.len(),
                        Write::Delete => 0,
                    }
            })
            .sum()
    }
}

impl Channel for Overlay {
    fn get(&self, key: &str) -> Option<Json> {
        match self.lock().get(key) {
            Some(Write::Set(v)) | Some(Write::Add { value: v, .. }) => Some(v.clone()),
            Some(Write::Delete) => None,
            None => self.base.get(key),
        }
    }
    fn set(&self, key: &str, value: Json) {
        self.lock().insert(key.to_string(), Write::Set(value));
    }
    fn delete(&self, key: &str) -> bool {
        let existed = self.get(key).is_some();
        self.lock().insert(key.to_string(), Write::Delete);
        existed
    }
    fn keys(&self) -> Vec<String> {
        let writes = self.lock();
        let mut keys: Vec<String> = self.base.keys().into_iter().filter(|k| !writes.contains_key(k)).collect();
        keys.extend(writes.iter().filter(|(_, w)| !matches!(w, Write::Delete)).map(|(k, _)| k.clone()));
        keys.sort();
        keys
    }
    fn size_bytes(&self) -> u64 {
        self.base.size_bytes() + self.written_bytes() as u64
    }
    fn add(&self, key: &str, amount: f64) -> Result<f64, ChannelError> {
        let mut writes = self.lock();
        let (current, prior_delta) = match writes.get(key) {
            Some(Write::Set(v)) => (Some(v.clone()), None),
            Some(Write::Delete) => (None, None),
            Some(Write::Add { delta, value }) => (Some(value.clone()), Some(*delta)),
            None => (self.base.get(key), Some(0.0)),
        };
        let (sum, value) = added(key, current.as_ref(), amount)?;
        let write = match prior_delta {
            Some(delta) => Write::Add { delta: delta + amount, value },
            None => Write::Set(value),
        };
        writes.insert(key.to_string(), write);
        Ok(sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> Json {
        Json::parse(s).unwrap()
    }

    #[test]
    fn overlay_reads_its_writes_and_hides_them_from_the_base() {
        let base = Arc::new(MemoryChannel::default());
        base.set("a", j("1"));
        let o = Overlay::new(base.clone());
        o.set("b", j("2"));
        assert!(o.delete("a"));
        assert_eq!(o.get("a"), None);
        assert_eq!(o.get("b"), Some(j("2")));
        assert_eq!(base.get("a"), Some(j("1")));
        assert_eq!(o.keys(), vec!["b"]);
        o.commit_into(base.as_ref());
        assert_eq!(base.keys(), vec!["b"]);
    }

    #[test]
    fn additions_of_two_overlays_sum() {
        let base = Arc::new(MemoryChannel::default());
        base.set("n", j("10"));
        let (x, y) = (Overlay::new(base.clone()), Overlay::new(base.clone()));
        assert_eq!(x.add("n", 1.0).unwrap(), 11.0);
        assert_eq!(y.add("n", 5.0).unwrap(), 15.0);
        x.commit_into(base.as_ref());
        y.commit_into(base.as_ref());
        assert_eq!(base.get("n"), Some(j("16")));
    }

    #[test]
    fn push_and_add_reject_wrong_types() {
        let c = MemoryChannel::default();
        c.set("s", j("\"x\""));
        assert_eq!(c.push("s", j("1"), false), Err(ChannelError::NotAList("s".into())));
        assert_eq!(c.add("s", 1.0), Err(ChannelError::NotANumber("s".into())));
        assert_eq!(c.push("l", j("1"), false), Ok(1));
        assert_eq!(c.push("l", j("0"), true), Ok(2));
        assert_eq!(c.get("l"), Some(j("[0,1]")));
        assert_eq!(c.add("f", 0.5), Ok(0.5));
    }
}
