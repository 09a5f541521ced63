//! The one place that builds the wasmtime configuration.
//!
//! Every setting that changes generated code (fuel, epochs) is part of the
//! engine's compatibility hash, which keys the compiled-artifact cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch ticker advances: the granularity of time limits.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of each pooled linear memory and table kept resident between
/// instances (reset with memset rather than returned to the kernel).
pub const KEEP_RESIDENT: usize = 1 << 20;

/// Engine-wide choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// Count fuel (needed when any task has a fuel budget).
    pub fuel: bool,
    /// Use the pooling instance allocator (`GRAFLOW_POOLING=0` turns it off).
    pub pooling: bool,
    /// Largest memory limit of any task, in bytes (the pool's slot size).
    pub max_memory_bytes: u64,
    /// Instances that may be alive at once (pool capacity).
    pub max_instances: u32,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings { fuel: false, pooling: pooling_from_env(), max_memory_bytes: 256 << 20, max_instances: 64 }
    }
}

/// Instances kept beyond a workflow's concurrency: idle reusable instances and
/// the one a module's `tasks` export runs in while it loads.
const SPARE_INSTANCES: u32 = 16;

/// The most instances a pool is sized for, whatever the workflow asks.
pub const MAX_INSTANCES: u32 = 1024;

impl EngineSettings {
    /// The settings for a run with `needs`: the one function that sizes a
    /// run's engine (fuel, memory slot size, instance pool).
    pub fn for_needs(needs: &crate::model::EngineNeeds) -> EngineSettings {
        let wanted = u32::try_from(needs.concurrency).unwrap_or(u32::MAX).saturating_add(SPARE_INSTANCES);
        EngineSettings {
            fuel: needs.fuel,
            max_memory_bytes: needs.max_memory_bytes,
            max_instances: wanted.clamp(64, MAX_INSTANCES),
            ..EngineSettings::default()
        }
    }

    /// Instances task executions may hold at once (one place is kept for
    /// loading modules).
    pub fn task_instances(&self) -> usize {
        (self.max_instances.max(4) as usize).saturating_sub(1)
    }
}

fn pooling_from_env() -> bool {
    match std::env::var("GRAFLOW_POOLING").as_deref() {
        Ok("0") | Ok("false") | Ok("off") => false,
        Ok(_) | Err(_) => true,
    }
}

/// Build the wasmtime engine for `settings`.
pub fn build_engine(settings: &EngineSettings) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(settings.fuel);
    config.parallel_compilation(true);
    if settings.pooling {
        let mut pool = PoolingAllocationConfig::new();
        let n = settings.max_instances.max(4);
        pool.total_component_instances(n);
        pool.total_core_instances(n * 8);
        pool.total_memories(n * 2);
        pool.total_tables(n * 4);
        pool.max_memories_per_component(4);
        pool.max_memory_size(settings.max_memory_bytes.next_multiple_of(64 << 10) as usize);
        // Reset small memories and tables with memset instead of madvise: a
        // fresh instance per task then costs no page faults or TLB shootdowns
        // for its first megabyte (measured in docs/benchmarks.md).
        pool.linear_memory_keep_resident(KEEP_RESIDENT);
        pool.table_keep_resident(KEEP_RESIDENT);
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Start ticking `engine`.
    pub fn start(engine: &Engine) -> wasmtime::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (engine.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("graflow-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| wasmtime::format_err!("cannot start the epoch ticker thread: {e}"))?;
        Ok(Ticker { stop, thread: Some(thread) })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
