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

/// Bytes each channel entry counts for beyond its key and value (the map's own
/// bookkeeping), so that many tiny entries are bounded too.
pub const ENTRY_OVERHEAD: u64 = 64;

/// What an entry of `key` holding `value_len` bytes counts against
/// `max_channel_bytes`.
pub fn entry_bytes(key: &str, value_len: usize) -> u64 {
    key.len() as u64 + value_len as u64 + ENTRY_OVERHEAD
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
    /// Bytes held: [`entry_bytes`] of every entry.
    fn size_bytes(&self) -> u64;

    /// What this channel changes over the root channel it is layered on: key
    /// to value, or to `None` for a deleted key. Empty for a root channel; an
    /// [`Overlay`] adds its writes to its base's. (A remote execution sees the
    /// root channel in Redis plus these.)
    fn pending_over_root(&self) -> BTreeMap<String, Option<Json>> {
        BTreeMap::new()
    }

    /// True if `key` holds a value.
    fn exists(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Insert `value` at the end (or the front) of the list under `key`; the new
    /// length. A missing key starts an empty list. The list is rebuilt once,
    /// as text.
    fn push(&self, key: &str, value: Json, front: bool) -> Result<usize, ChannelError> {
        let (list, len) = pushed(key, self.get(key), &value, front)?;
        self.set(key, list);
        Ok(len)
    }
}

/// The list under `key` (`current`; none starts an empty list) with `item`
/// added at the end (or the front), and its new length.
pub fn pushed(key: &str, current: Option<Json>, item: &Json, front: bool) -> Result<(Json, usize), ChannelError> {
    match current {
        None => Ok((Json::list_of(item), 1)),
        Some(list) => list.with_item(item, front).ok_or_else(|| ChannelError::NotAList(key.to_string())),
    }
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
        self.bytes += entry_bytes(key, value.len());
        if let Some(old) = self.map.insert(key.to_string(), value) {
            self.bytes -= entry_bytes(key, old.len());
        }
    }
    fn remove(&mut self, key: &str) -> bool {
        match self.map.remove(key) {
            Some(old) => {
                self.bytes -= entry_bytes(key, old.len());
                true
            }
            None => false,
        }
    }
}

impl MemoryChannel {
    /// A channel holding `values`.
    pub fn from_map(values: BTreeMap<String, Json>) -> MemoryChannel {
        let bytes = values.iter().map(|(k, v)| entry_bytes(k, v.len())).sum();
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
    writes: Mutex<Writes>,
}

/// The pending writes and how much they change the base's size.
#[derive(Default)]
struct Writes {
    map: BTreeMap<String, Write>,
    /// Size change over the base, in [`entry_bytes`].
    net: i64,
}

impl Write {
    fn visible(&self) -> Option<&Json> {
        match self {
            Write::Set(v) | Write::Add { value: v, .. } => Some(v),
            Write::Delete => None,
        }
    }
}

impl Overlay {
    /// An empty overlay over `base`.
    pub fn new(base: Arc<dyn Channel>) -> Overlay {
        Overlay { base, writes: Mutex::new(Writes::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writes> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record `write` for `key`, keeping the size change current.
    fn put(&self, writes: &mut Writes, key: &str, write: Write) {
        let size = |v: Option<&Json>| v.map_or(0, |v| entry_bytes(key, v.len()) as i64);
        let old = match writes.map.get(key) {
            Some(w) => size(w.visible()),
            None => size(self.base.get(key).as_ref()),
        };
        writes.net += size(write.visible()) - old;
        writes.map.insert(key.to_string(), write);
    }

    /// Apply the writes to `target` in key order. Additions are applied as
    /// additions; if the target no longer holds a number there, the overlay's
    /// value is stored instead.
    pub fn commit_into(&self, target: &dyn Channel) {
        let writes = std::mem::take(&mut *self.lock());
        for (key, write) in writes.map {
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

    /// Keys written (set, deleted or added to) so far.
    pub fn written_keys(&self) -> usize {
        self.lock().map.len()
    }

    /// The pending writes, in key order.
    pub fn writes(&self) -> Vec<(String, PendingWrite)> {
        self.lock()
            .map
            .iter()
            .map(|(k, w)| {
                let w = match w {
                    Write::Set(v) => PendingWrite::Set(v.clone()),
                    Write::Delete => PendingWrite::Delete,
                    Write::Add { delta, .. } => PendingWrite::Add(*delta),
                };
                (k.clone(), w)
            })
            .collect()
    }
}

/// One pending write of an [`Overlay`], as [`Overlay::writes`] lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum PendingWrite {
    /// The key is set to this value.
    Set(Json),
    /// The key is deleted.
    Delete,
    /// This amount is added to the number under the key.
    Add(f64),
}

impl Channel for Overlay {
    fn pending_over_root(&self) -> BTreeMap<String, Option<Json>> {
        let mut pending = self.base.pending_over_root();
        for (k, w) in &self.lock().map {
            pending.insert(k.clone(), w.visible().cloned());
        }
        pending
    }
    fn get(&self, key: &str) -> Option<Json> {
        match self.lock().map.get(key) {
            Some(w) => w.visible().cloned(),
            None => self.base.get(key),
        }
    }
    fn set(&self, key: &str, value: Json) {
        let mut writes = self.lock();
        self.put(&mut writes, key, Write::Set(value));
    }
    fn delete(&self, key: &str) -> bool {
        let existed = self.get(key).is_some();
        let mut writes = self.lock();
        self.put(&mut writes, key, Write::Delete);
        existed
    }
    fn keys(&self) -> Vec<String> {
        let writes = self.lock();
        let mut keys: Vec<String> = self.base.keys().into_iter().filter(|k| !writes.map.contains_key(k)).collect();
        keys.extend(writes.map.iter().filter(|(_, w)| !matches!(w, Write::Delete)).map(|(k, _)| k.clone()));
        keys.sort();
        keys
    }
    fn size_bytes(&self) -> u64 {
        let net = self.lock().net;
        self.base.size_bytes().saturating_add_signed(net)
    }
    fn add(&self, key: &str, amount: f64) -> Result<f64, ChannelError> {
        let mut writes = self.lock();
        let (current, prior_delta) = match writes.map.get(key) {
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
        self.put(&mut writes, key, write);
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
