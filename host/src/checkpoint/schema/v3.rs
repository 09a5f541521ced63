//! Schema version 3: an increment, written over a full (schema 2) checkpoint
//! of the same run, its base.
//!
//! - `<id>.ctx`: the container of `format.rs` (header version 3) around the
//!   bincode of [`DeltaOut`] / [`DeltaIn`]: the checkpoint id, the run state
//!   whole (the same type as schema 2), then the channel keys set since the
//!   base with their values and the keys deleted since the base, each list
//!   sorted and without repeats. The workflow (graph, tasks, limits, grants,
//!   module digests) is the base's: an increment is only written over a base
//!   of the same workflow.
//! - `<id>.state.json`: [`super::StateFile`], as in schema 2.
//! - `<id>.meta.json`: the schema-2 record with `base` set, under
//!   `"schema_version": "3"` (see `v2.rs`); `base` names the base's id and the
//!   size and BLAKE3 digest of its `.ctx`, so the increment's signature covers
//!   its base too.
//!
//! An increment holds every change since its base, not since the checkpoint
//! before it: resuming one reads its base and itself, never a chain, and no
//! increment depends on another.

use super::{Context, Invalid, Values, v2};
use crate::engine::RunState;
use crate::json::Json;
use crate::model;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `.ctx` payload of an increment as written: borrows the changes.
#[derive(Serialize)]
pub struct DeltaOut<'a> {
    checkpoint_id: &'a str,
    state: v2::State,
    set: &'a [(&'a str, &'a Json)],
    deleted: &'a [&'a str],
}

impl<'a> DeltaOut<'a> {
    /// The schema-3 form of a run at a task boundary whose workflow is its
    /// base's and whose channel is its base's with `set` set and `deleted`
    /// deleted (both sorted by key).
    pub fn new(
        checkpoint_id: &'a str,
        s: &RunState,
        set: &'a [(&'a str, &'a Json)],
        deleted: &'a [&'a str],
    ) -> DeltaOut<'a> {
        DeltaOut { checkpoint_id, state: v2::State::of(s), set, deleted }
    }
}

/// The `.ctx` payload of an increment as read: values borrowed from the payload.
#[derive(Deserialize)]
pub struct DeltaIn<'a> {
    checkpoint_id: String,
    state: v2::State,
    #[serde(borrow)]
    set: Vec<(&'a str, &'a str)>,
    #[serde(borrow)]
    deleted: Vec<&'a str>,
}

/// An increment decoded, before it is applied to its base's channel.
#[derive(Debug)]
pub struct Delta {
    /// The checkpoint it belongs to.
    pub checkpoint_id: String,
    /// The run state, whole.
    pub state: RunState,
    /// Keys set since the base, sorted, with their values.
    pub set: Vec<(String, Json)>,
    /// Keys deleted since the base, sorted.
    pub deleted: Vec<String>,
}

/// True if `keys` is sorted without repeats.
fn strictly_sorted<'k>(mut keys: impl Iterator<Item = &'k str>) -> bool {
    let Some(mut last) = keys.next() else { return true };
    for k in keys {
        if k <= last {
            return false;
        }
        last = k;
    }
    true
}

impl DeltaIn<'_> {
    /// Convert to the engine's types, checking stored JSON unless `values`
    /// trusts it; values share `owner` (the payload read once) when given.
    pub fn into_delta(self, values: Values, owner: Option<&bytes::Bytes>) -> Result<Delta, Invalid> {
        if !strictly_sorted(self.set.iter().map(|(k, _)| *k)) || !strictly_sorted(self.deleted.iter().copied()) {
            return Err(Invalid("the keys of the increment are not sorted, or repeat".into()));
        }
        let state = self.state.into_run_state(values)?;
        let set = super::channel_in(self.set, owner, values)?;
        let deleted = self.deleted.into_iter().map(str::to_string).collect();
        Ok(Delta { checkpoint_id: self.checkpoint_id, state, set, deleted })
    }
}

impl Delta {
    /// The whole context: its base's `workflow`, and its base's channel
    /// (`base`) with the changes made. Refuses changes that do not fit the
    /// base: a deleted key the base lacks, a key both set and deleted. The
    /// result is validated like a full one.
    pub fn apply(self, workflow: model::Workflow, mut base: BTreeMap<String, Json>) -> Result<Context, Invalid> {
        for key in &self.deleted {
            if base.remove(key).is_none() {
                return Err(Invalid(format!("the increment deletes channel key '{key}', which its base lacks")));
            }
        }
        for (key, value) in self.set {
            if self.deleted.binary_search(&key).is_ok() {
                return Err(Invalid(format!("the increment both sets and deletes channel key '{key}'")));
            }
            base.insert(key, value);
        }
        let ctx = Context { checkpoint_id: self.checkpoint_id, workflow, state: self.state, channel: base };
        super::validate(&ctx)?;
        Ok(ctx)
    }
}

/// What changed from `base` to `now`: the keys set (new, or with another
/// value) and the keys deleted, each sorted. One walk over both maps; a value
/// still shared with the base (the usual case) is compared without reading it.
pub fn changes<'n, 'b>(
    base: &'b BTreeMap<String, Json>,
    now: &'n BTreeMap<String, Json>,
) -> (Vec<(&'n str, &'n Json)>, Vec<&'b str>) {
    use std::cmp::Ordering;
    let (mut set, mut deleted) = (Vec::new(), Vec::new());
    let (mut b, mut n) = (base.iter().peekable(), now.iter().peekable());
    loop {
        match (b.peek(), n.peek()) {
            (None, None) => break,
            (Some((bk, _)), None) => {
                deleted.push(bk.as_str());
                b.next();
            }
            (None, Some((nk, nv))) => {
                set.push((nk.as_str(), *nv));
                n.next();
            }
            (Some((bk, bv)), Some((nk, nv))) => match bk.as_str().cmp(nk.as_str()) {
                Ordering::Less => {
                    deleted.push(bk.as_str());
                    b.next();
                }
                Ordering::Greater => {
                    set.push((nk.as_str(), *nv));
                    n.next();
                }
                Ordering::Equal => {
                    if bv != nv {
                        set.push((nk.as_str(), *nv));
                    }
                    b.next();
                    n.next();
                }
            },
        }
    }
    (set, deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, Json> {
        pairs.iter().map(|(k, v)| (k.to_string(), Json::parse(*v).unwrap())).collect()
    }

    #[test]
    fn changes_are_what_turns_the_base_into_now() {
        let base = map(&[("a", "1"), ("b", "2"), ("c", "3"), ("e", "5")]);
        let mut now = base.clone();
        now.remove("a");
        now.insert("b".into(), Json::parse("20").unwrap());
        now.insert("c".into(), Json::parse("3").unwrap()); // same text, another allocation
        now.insert("d".into(), Json::parse("4").unwrap());
        now.remove("e");
        now.insert("f".into(), Json::parse("6").unwrap());
        let (set, deleted) = changes(&base, &now);
        assert_eq!(
            set.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
            [("b", "20"), ("d", "4"), ("f", "6")]
        );
        assert_eq!(deleted, ["a", "e"]);
        let mut rebuilt = base.clone();
        for k in &deleted {
            rebuilt.remove(*k);
        }
        for (k, v) in &set {
            rebuilt.insert(k.to_string(), (*v).clone());
        }
        assert_eq!(rebuilt, now);
        assert_eq!(changes(&now, &now), (vec![], vec![]));
    }

    #[test]
    fn sorted_means_strictly_increasing() {
        assert!(strictly_sorted(["a", "b", "c"].into_iter()));
        assert!(strictly_sorted(std::iter::empty()));
        assert!(!strictly_sorted(["a", "a"].into_iter()));
        assert!(!strictly_sorted(["b", "a"].into_iter()));
    }
}
