//! Parallel groups: branches run concurrently, the group is the join.
//!
//! Each member runs in its own branch: a frame with its own queue (the member
//! and whatever it queues: its chain, its dynamic tasks, its iterations) over an
//! overlay of the channel as it was when the group started. The parent frame is
//! idle meanwhile, so that base never changes under the branches. When every
//! branch has finished, the policy decides the group's outcome; the writes of
//! successful branches are committed in member order (deterministic), those of
//! failed branches are discarded.

use super::frame::{Completion, Frame, FrameEnd, StepEnd};
use super::state::{RunState, TaskSpec};
use super::{CheckpointRequest, RunError, Shared, result_key};
use crate::channel::{Channel, Overlay};
use crate::json::Json;
use crate::model::{GroupDef, GroupPolicy, Node};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What a branch starts from.
struct Seed<'a> {
    session_id: &'a str,
    input: &'a Json,
    cycle_counts: &'a BTreeMap<String, u32>,
    /// The parent's id counters: a branch goes on from them, so an id made in
    /// a group that runs again is never one made before.
    id_counters: &'a BTreeMap<String, u32>,
    prefix: &'a str,
    /// The group's execution id (for its branches' events).
    group_id: &'a str,
    budget: u64,
    queue_base: (u64, u64),
    depth: usize,
}

/// How one branch ended.
struct Branch {
    member: String,
    end: Result<FrameEnd, RunError>,
    overlay: Arc<Overlay>,
    state: RunState,
    checkpoint: Option<CheckpointRequest>,
}

impl Frame<'_, '_> {
    pub(super) fn run_group(&mut self, spec: TaskSpec, group: &str) -> Result<StepEnd, RunError> {
        let id = spec.id.clone();
        let end = self.run_group_inner(spec, group);
        self.shared.listener.emit(self.state.queue.len(), || super::EventKind::GroupFinished {
            task_id: id,
            error: match &end {
                Ok(StepEnd::Interrupted) => Some("interrupted".into()),
                Ok(_) => None,
                Err(e) => Some(e.to_string()),
            },
        });
        end
    }

    fn run_group_inner(&mut self, spec: TaskSpec, group: &str) -> Result<StepEnd, RunError> {
        let def = match self.shared.workflow.graph.nodes.get(group) {
            Some(Node::Group(def)) => def.clone(),
            _ => {
                return Err(RunError::Inconsistent(format!(
                    "the queue names group '{group}', which the workflow does not have"
                )));
            }
        };
        if self.depth >= crate::model::flow::MAX_DEPTH {
            return Err(RunError::Bound {
                bound: "flow::MAX_DEPTH",
                limit: crate::model::flow::MAX_DEPTH as u64,
                detail: format!("group '{group}' would run nested {} groups deep", self.depth + 1),
            });
        }
        tracing::debug!(group, members = def.members.len(), "group started");
        self.shared.listener.emit(self.state.queue.len(), || super::EventKind::GroupStarted {
            group: group.to_string(),
            task_id: spec.id.clone(),
            members: def.members.clone(),
            scope: self.prefix.clone(),
        });
        let seed = Seed {
            session_id: &self.state.session_id,
            input: &self.state.input,
            cycle_counts: &self.state.cycle_counts,
            id_counters: &self.state.id_counters,
            prefix: &self.prefix,
            group_id: &spec.id,
            budget: self.step_budget.saturating_sub(self.state.steps + 1),
            queue_base: self.queue_usage(),
            depth: self.depth,
        };
        let branches = run_branches(self.shared, &seed, &def.members, &self.channel);
        if branches.iter().any(|b| matches!(b.end, Ok(FrameEnd::Interrupted))) {
            self.state.queue.push_front(spec);
            return Ok(StepEnd::Interrupted);
        }
        if let Some(e) = branches.iter().find_map(|b| match &b.end {
            Err(
                e @ (RunError::Cancelled { .. }
                | RunError::MaxSteps { .. }
                | RunError::Checkpoint { .. }
                | RunError::Bound { .. }
                | RunError::Inconsistent(_)),
            ) => Some(e.clone()),
            _ => None,
        }) {
            if matches!(e, RunError::MaxSteps { .. }) {
                self.state.queue.push_front(spec);
            }
            return Err(e);
        }
        judge(group, &def, &branches)?;
        let start_counts = self.state.cycle_counts.clone();
        self.merge(&spec, &start_counts, branches)
    }

    /// Commit successful branches in member order and complete the group.
    fn merge(
        &mut self,
        spec: &TaskSpec,
        start_counts: &BTreeMap<String, u32>,
        branches: Vec<Branch>,
    ) -> Result<StepEnd, RunError> {
        let mut results: Vec<(String, Json)> = Vec::new();
        let mut terminate = None;
        let mut checkpoint = None;
        // Ids made by every branch, a failed one's too (they were seen, in
        // events and logs): never made again.
        for b in &branches {
            for (task, n) in &b.state.id_counters {
                let counter = self.state.id_counters.entry(task.clone()).or_insert(0);
                *counter = (*counter).max(*n);
            }
        }
        for b in branches.into_iter().filter(|b| b.end.is_ok()) {
            b.overlay.commit_into(self.channel.as_ref());
            self.state.steps += b.state.steps;
            for id in &b.state.completed {
                self.state.mark_completed(id);
            }
            for (key, count) in &b.state.cycle_counts {
                let before = start_counts.get(key).copied().unwrap_or(0);
                let delta = count.saturating_sub(before);
                *self.state.cycle_counts.entry(key.clone()).or_insert(0) += delta;
            }
            self.state.dynamic_tasks.extend(b.state.dynamic_tasks);
            if let Ok(FrameEnd::Terminated(message)) = b.end {
                terminate = Some(message);
            }
            if b.checkpoint.is_some() {
                checkpoint = b.checkpoint;
            }
            let value = self.channel.get(&result_key(&b.member)).unwrap_or_else(Json::null);
            results.push((b.member, value));
        }
        results.sort_by(|a, b| a.0.cmp(&b.0));
        let bounds = &self.shared.workflow.settings.bounds;
        let result = Json::object(results.iter().map(|(k, v)| (k.as_str(), v)));
        if result.len() as u64 > bounds.max_value_bytes {
            return Err(RunError::Bound {
                bound: "max_value_bytes",
                limit: bounds.max_value_bytes,
                detail: format!("the result of group '{}' (its members' results) is {} bytes", spec.id, result.len()),
            });
        }
        // The group's result is a value of its own in the channel, beside the
        // members' results it copies.
        let key = result_key(&spec.id);
        let replaced = self.channel.get(&key).map_or(0, |old| crate::channel::entry_bytes(&key, old.len()));
        let total =
            (self.channel.size_bytes() + crate::channel::entry_bytes(&key, result.len())).saturating_sub(replaced);
        if total > bounds.max_channel_bytes {
            return Err(RunError::Bound {
                bound: "max_channel_bytes",
                limit: bounds.max_channel_bytes,
                detail: format!(
                    "the branches of group '{}' and its result together make the channel {total} bytes",
                    spec.id
                ),
            });
        }
        self.channel.set(&key, result.clone());
        let skip_successors = terminate.is_some();
        self.complete(spec, Completion { result, next: Vec::new(), skip_successors, terminate, checkpoint })
    }
}

/// Most threads running branches at once in a run, whatever the workflow.
pub const MAX_BRANCH_THREADS: usize = 1024;

/// Stack of a branch thread: a branch may run a nested group's members on
/// its own thread (when the run has no thread to spare), down to
/// `flow::MAX_DEPTH` levels, the deepest one running a task.
const BRANCH_STACK_BYTES: usize = 8 << 20;

/// The threads a run may use for branches: what every group of the
/// workflow running at once would take (each `parallelism` threads, or one
/// per member if fewer), at most [`MAX_BRANCH_THREADS`]. A group that finds
/// none to spare runs its members on its own thread, one after another (same
/// results), so only a group running more than once at a time (one that
/// re-enters itself through `next_task`) is held back, and it cannot multiply
/// threads.
pub struct BranchThreads {
    live: AtomicUsize,
    cap: usize,
}

impl BranchThreads {
    /// The budget for `workflow`.
    pub fn for_workflow(workflow: &crate::model::Workflow) -> BranchThreads {
        let p = workflow.settings.parallelism.max(1);
        let cap = workflow
            .graph
            .nodes
            .values()
            .filter_map(|n| match n {
                Node::Group(g) => Some(g.members.len().min(p)),
                Node::Task => None,
            })
            .fold(0usize, usize::saturating_add)
            .clamp(1, MAX_BRANCH_THREADS);
        BranchThreads { live: AtomicUsize::new(0), cap }
    }

    /// Take up to `wanted` threads; how many were taken.
    fn take(&self, wanted: usize) -> usize {
        let mut taken = 0;
        let _ = self.live.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |live| {
            taken = wanted.min(self.cap.saturating_sub(live));
            Some(live + taken)
        });
        taken
    }

    fn give_back(&self, n: usize) {
        self.live.fetch_sub(n, Ordering::SeqCst);
    }
}

/// Run every member's branch, at most `parallelism` at a time (fewer when the
/// run's [`BranchThreads`] are spent); outcomes in member order.
fn run_branches(shared: &Shared, seed: &Seed, members: &[String], base: &Arc<dyn Channel>) -> Vec<Branch> {
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Branch>>> = members.iter().map(|_| Mutex::new(None)).collect();
    let wanted = shared.workflow.settings.parallelism.clamp(1, members.len().max(1));
    let workers = shared.branch_threads.take(wanted);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(member) = members.get(i) else { break };
            let branch = run_branch(shared, seed, member, base.clone());
            *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(branch);
        }
    };
    let spawned = std::thread::scope(|s| {
        let mut spawned = 0;
        for _ in 0..workers {
            // A thread the OS refuses is not a failure: fewer threads share the work.
            let thread = std::thread::Builder::new().name("graflow-branch".into()).stack_size(BRANCH_STACK_BYTES);
            match thread.spawn_scoped(s, work) {
                Ok(_) => spawned += 1,
                Err(e) => {
                    tracing::warn!("cannot start a branch thread ({e}); running the group with {spawned}");
                    break;
                }
            }
        }
        shared.branch_threads.give_back(workers - spawned);
        if spawned == 0 {
            work();
        }
        spawned
    });
    // The scope joined them.
    shared.branch_threads.give_back(spawned);
    // A worker that panicked makes `scope` panic, so every slot is filled;
    // an empty one would still be reported, not unwrapped.
    slots
        .into_iter()
        .zip(members)
        .map(|(slot, member)| {
            slot.into_inner().unwrap_or_else(|e| e.into_inner()).unwrap_or_else(|| Branch {
                member: member.clone(),
                end: Err(RunError::Inconsistent(format!("branch '{member}' did not report its end"))),
                overlay: Arc::new(Overlay::new(base.clone())),
                state: RunState::empty(seed.session_id.to_string(), seed.input.clone()),
                checkpoint: None,
            })
        })
        .collect()
}

fn run_branch(shared: &Shared, seed: &Seed, member: &str, base: Arc<dyn Channel>) -> Branch {
    let scope = format!("{}{member}.", seed.prefix);
    shared.listener.emit(0, || super::EventKind::BranchStarted {
        group_id: seed.group_id.to_string(),
        member: member.to_string(),
        scope: scope.clone(),
    });
    let branch = run_branch_inner(shared, seed, member, base, scope.clone());
    shared.listener.emit(0, || super::EventKind::BranchFinished {
        group_id: seed.group_id.to_string(),
        member: member.to_string(),
        scope,
        error: match &branch.end {
            Ok(FrameEnd::Interrupted) => Some("interrupted".into()),
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        },
    });
    branch
}

fn run_branch_inner(shared: &Shared, seed: &Seed, member: &str, base: Arc<dyn Channel>, prefix: String) -> Branch {
    let overlay = Arc::new(Overlay::new(base));
    let mut state = RunState::empty(seed.session_id.to_string(), seed.input.clone());
    state.cycle_counts = seed.cycle_counts.clone();
    state.id_counters = seed.id_counters.clone();
    state.queue.push_back(TaskSpec::for_node(&shared.workflow, member, None));
    let mut checkpoint = None;
    let end = {
        let channel: Arc<dyn Channel> = overlay.clone();
        let mut frame = Frame::new(shared, &mut state, channel, prefix, seed.budget, seed.queue_base);
        frame.depth = seed.depth + 1;
        frame.run(&mut |f| {
            if let Some(r) = f.pending_checkpoint.take() {
                checkpoint = Some(r);
            }
            Ok(())
        })
    };
    Branch { member: member.to_string(), end, overlay, state, checkpoint }
}

/// Apply the group's policy; the error lists failed members with their errors
/// and the members that succeeded.
fn judge(group: &str, def: &GroupDef, branches: &[Branch]) -> Result<(), RunError> {
    let failed: Vec<(String, String)> =
        branches.iter().filter_map(|b| b.end.as_ref().err().map(|e| (b.member.clone(), e.to_string()))).collect();
    let succeeded: Vec<String> = branches.iter().filter(|b| b.end.is_ok()).map(|b| b.member.clone()).collect();
    let ok = match &def.policy {
        GroupPolicy::Strict => failed.is_empty(),
        GroupPolicy::BestEffort => true,
        GroupPolicy::AtLeast(n) => succeeded.len() >= *n as usize,
        GroupPolicy::Critical(critical) => !failed.iter().any(|(m, _)| critical.contains(m)),
    };
    for (member, error) in &failed {
        tracing::warn!(group, member = %member, error = %error, "group member failed");
    }
    if ok {
        return Ok(());
    }
    Err(RunError::GroupFailed { group: group.to_string(), policy: def.policy.to_string(), failed, succeeded })
}
