//! The benchmark workloads of `docs/benchmarks.md`, through the library and the
//! real sandbox. `cargo bench --bench workloads [-- <name>...]` prints one JSON
//! object per measurement: `{"name", "value", "unit", "detail"}`. Each figure is
//! the median of several runs unless its detail says otherwise.

use graflow_host::Json;
use graflow_host::channel::MemoryChannel;
use graflow_host::checkpoint::{self, CheckpointStore, SigningKey, Trust};
use graflow_host::digest::Sha256;
use graflow_host::engine::{CheckpointMode, CheckpointRequest, RunState};
use graflow_host::model::*;
use graflow_host::session::{ResumeOptions, RunOptions, Session};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The same allocator as the binary (host/src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn emit(name: &str, value: f64, unit: &str, detail: &str) {
    println!("{}", serde_json::json!({"name": name, "value": value, "unit": unit, "detail": detail}));
}

/// Flush what earlier workloads left to write back, so that a durable write
/// measures its own cost (the kernel's write-back of gigabytes written just
/// before slows an fsync several times over).
fn quiet_disk() {
    let _ = std::process::Command::new("sync").status();
}

/// The median of three runs of `f` (each giving milliseconds and a count) and
/// the count of the last.
fn median_of_3(mut f: impl FnMut() -> (f64, usize)) -> (f64, usize) {
    let mut count = 0;
    let ms = median(
        (0..3)
            .map(|_| {
                let (ms, n) = f();
                count = n;
                ms
            })
            .collect(),
    );
    (ms, count)
}

/// Milliseconds per call of `op`: `warm` calls first, then the median of 5
/// samples of `n` calls each.
fn per_op_median(warm: usize, n: usize, mut op: impl FnMut()) -> f64 {
    for _ in 0..warm {
        op();
    }
    median(
        (0..5)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..n {
                    op();
                }
                started.elapsed().as_secs_f64() * 1e3 / n as f64
            })
            .collect(),
    )
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn module_ref(path: &Path) -> ModuleRef {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e} (run `make guests`)", path.display()));
    ModuleRef { path: path.to_path_buf(), sha256: Sha256::of(&bytes), size: bytes.len() as u64 }
}

fn task_def(name: &str, module: &str, export: &str, inputs: &[&str]) -> TaskDef {
    TaskDef {
        name: name.into(),
        module: module.into(),
        export: export.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        max_cycles: 100_000,
        retry: RetryPolicy::default(),
        limits: Limits::default(),
        grants: Grants::default(),
        reuse_instance: false,
    }
}

/// A workflow over `module` from nodes and edges built by the caller.
fn workflow(module: &Path, tasks: Vec<TaskDef>, graph: Graph, start: &str) -> Workflow {
    let settings = RunSettings {
        max_steps: u64::MAX,
        parallelism: 4,
        bounds: HostBounds::default(),
        keep_checkpoints: None,
        keep_iteration_results: graflow_host::model::DEFAULT_KEEP_ITERATION_RESULTS,
    };
    let modules = BTreeMap::from([("m".to_string(), module_ref(module))]);
    let tasks = tasks.into_iter().map(|t| (t.name.clone(), t)).collect();
    Workflow {
        name: "bench".into(),
        flow: "generated".into(),
        start: start.into(),
        modules,
        tasks,
        graph,
        settings,
        outbound: Default::default(),
    }
}

fn chain(module: &Path, n: usize, export: &str) -> Workflow {
    let mut graph = Graph::default();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("t{i}");
        graph.nodes.insert(name.clone(), Node::Task);
        if i + 1 < n {
            graph.successors.insert(name.clone(), vec![format!("t{}", i + 1)]);
        }
        tasks.push(task_def(&name, "m", export, &[]));
    }
    workflow(module, tasks, graph, "t0")
}

fn key() -> SigningKey {
    SigningKey::from_bytes([9; 32])
}

fn options(cache: &Path) -> RunOptions {
    RunOptions { cache_dir: Some(cache.to_path_buf()), key: Some(key()), ..RunOptions::default() }
}

/// A session of `wf` with its modules loaded (through the library entry
/// point every run takes).
fn sandbox_for(wf: &Workflow, cache: &Path) -> Session {
    Session::from_workflow(wf.clone(), Json::null(), options(cache)).unwrap()
}

/// Run the session's workflow once from the start; wall time of the run (not
/// of loading).
fn run_once(session: &mut Session, input: &str) -> Duration {
    session.restart(Json::parse(input).unwrap()).unwrap();
    let started = Instant::now();
    session.run().unwrap();
    started.elapsed()
}

fn bench_module() -> PathBuf {
    repo().join("tests/guests/bench.wasm")
}

fn cache_dir() -> PathBuf {
    repo().join("target/bench-cache")
}

fn chains() {
    for (n, runs) in [(1_000usize, 9), (10_000, 5), (100_000, 3)] {
        let wf = Arc::new(chain(&bench_module(), n, "noop"));
        let mut sandbox = sandbox_for(&wf, &cache_dir());
        run_once(&mut sandbox, "{}");
        let us = median((0..runs).map(|_| run_once(&mut sandbox, "{}").as_secs_f64() * 1e6 / n as f64).collect());
        emit(
            &format!("chain_{n}"),
            us,
            "us/task",
            &format!("{n} no-op Rust tasks, fresh sandbox per task, median of {runs}"),
        );
    }
}

/// A local OTLP collector for the tracing row: answers every export with
/// 200 and drops it (what the exporter's side costs is measured, not a
/// collector's).
fn sink_collector() -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut line = String::new();
                    let mut length = 0usize;
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err()
                        || conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// The chain of 1,000 with tracing off and on (spans exported to a local
/// collector), runs interleaved so both see the same machine.
fn tracing() {
    use graflow_host::telemetry::{RunTracer, TraceConfig, Tracing};
    let n = 1_000usize;
    let wf = Arc::new(chain(&bench_module(), n, "noop"));
    let config = TraceConfig {
        endpoint: format!("http://127.0.0.1:{}/v1/traces", sink_collector()),
        service_name: "graflow-bench".into(),
        export_timeout: Duration::from_secs(10),
    };
    let pipeline = Tracing::start(&config).unwrap();
    let tracer = RunTracer::new(&pipeline, "run");
    tracer.begin(&wf, "bench", None);
    let mut off = sandbox_for(&wf, &cache_dir());
    let mut on = Session::from_workflow(
        (*wf).clone(),
        Json::null(),
        RunOptions { listener: graflow_host::engine::Listener(Some(tracer.clone())), ..options(&cache_dir()) },
    )
    .unwrap();
    run_once(&mut off, "{}");
    run_once(&mut on, "{}");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        a.push(run_once(&mut off, "{}").as_secs_f64() * 1e6 / n as f64);
        b.push(run_once(&mut on, "{}").as_secs_f64() * 1e6 / n as f64);
    }
    let (off_us, on_us) = (median(a), median(b));
    emit(
        "chain_1000_tracing_off",
        off_us,
        "us/task",
        "chain of 1,000 no-op tasks, no endpoint configured, median of 9 (interleaved with the next row)",
    );
    emit(
        "chain_1000_tracing_on",
        on_us,
        "us/task",
        "the same with spans exported over OTLP/HTTP to a local collector (2 spans per task), median of 9",
    );
    emit("chain_1000_tracing_ratio", on_us / off_us, "x", "tracing on over off");
    tracer.finish("completed", None);
    pipeline.shutdown();
}

fn chain_reuse() {
    for n in [1_000usize, 100_000] {
        let mut wf = chain(&bench_module(), n, "noop");
        for t in wf.tasks.values_mut() {
            t.reuse_instance = true;
        }
        let wf = Arc::new(wf);
        let mut sandbox = sandbox_for(&wf, &cache_dir());
        run_once(&mut sandbox, "{}");
        let runs = if n > 10_000 { 3 } else { 9 };
        let us = median((0..runs).map(|_| run_once(&mut sandbox, "{}").as_secs_f64() * 1e6 / n as f64).collect());
        emit(
            &format!("chain_reuse_{n}"),
            us,
            "us/task",
            &format!("{n} no-op Rust tasks, reuse_instance = true, median of {runs}"),
        );
    }
}

fn fan_out() {
    let mut graph = Graph::default();
    let mut tasks = vec![task_def("src", "m", "noop", &[]), task_def("sink", "m", "noop", &[])];
    let members: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
    for m in &members {
        graph.nodes.insert(m.clone(), Node::Task);
        tasks.push(task_def(m, "m", "noop", &[]));
    }
    graph.nodes.insert("src".into(), Node::Task);
    graph.nodes.insert("sink".into(), Node::Task);
    graph.nodes.insert("group".into(), Node::Group(GroupDef { members, policy: GroupPolicy::Strict }));
    graph.successors.insert("src".into(), vec!["group".into()]);
    graph.successors.insert("group".into(), vec!["sink".into()]);
    let wf = Arc::new(workflow(&bench_module(), tasks, graph, "src"));
    let mut sandbox = sandbox_for(&wf, &cache_dir());
    run_once(&mut sandbox, "{}");
    let ms = median((0..15).map(|_| run_once(&mut sandbox, "{}").as_secs_f64() * 1e3).collect());
    emit(
        "fan_out_100",
        ms * 1000.0 / 102.0,
        "us/task",
        &format!("src >> (100 parallel no-ops) >> sink: {ms:.2} ms per run, median of 15"),
    );
}

fn iterations() {
    let mut graph = Graph::default();
    graph.nodes.insert("it".into(), Node::Task);
    let wf = Arc::new(workflow(&bench_module(), vec![task_def("it", "m", "iterate", &["times"])], graph, "it"));
    let mut sandbox = sandbox_for(&wf, &cache_dir());
    run_once(&mut sandbox, r#"{"times":1000}"#);
    let us = median((0..9).map(|_| run_once(&mut sandbox, r#"{"times":1000}"#).as_secs_f64() * 1e6 / 1000.0).collect());
    emit("next_iteration_1000", us, "us/iteration", "one task, 1,000 runs through next_iteration, median of 9");
}

/// `a >> b` with `a` completed and a channel holding `mb` MiB, its session
/// (modules loaded) and the checkpoint request after `a`: what the
/// checkpoint rows write, to a directory or a bucket.
fn checkpoint_fixture(mb: usize) -> (Arc<Workflow>, Session, BTreeMap<String, Json>, RunState, CheckpointRequest) {
    let mut graph = Graph::default();
    graph.nodes.insert("a".into(), Node::Task);
    graph.nodes.insert("b".into(), Node::Task);
    graph.successors.insert("a".into(), vec!["b".into()]);
    let wf = Arc::new(workflow(
        &bench_module(),
        vec![task_def("a", "m", "noop", &[]), task_def("b", "m", "noop", &[])],
        graph,
        "a",
    ));
    let sandbox = sandbox_for(&wf, &cache_dir());
    let blob = Json::encode(&"x".repeat(mb << 20));
    let channel = BTreeMap::from([("blob".to_string(), blob), ("a.__result__".to_string(), Json::null())]);
    let mut state = RunState::new(&wf, "bench".into(), Json::parse("{}").unwrap());
    state.queue.remove(0);
    state.queue.push_back(graflow_host::engine::TaskSpec::for_node(&wf, "b", None));
    state.mark_completed("a");
    state.steps = 1;
    let request = CheckpointRequest {
        task_id: Some("a".into()),
        cycle_count: 1,
        elapsed_time: 0.0,
        mode: CheckpointMode::Deferred,
        user_metadata: Json::null(),
    };
    (wf, sandbox, channel, state, request)
}

fn checkpoints() {
    quiet_disk();
    for mb in [1usize, 100] {
        let (wf, sandbox, channel, state, request) = checkpoint_fixture(mb);
        let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
        let mut store = CheckpointStore::new(dir.path(), sandbox.sandbox().module_code(), Some(key()));
        store.write_checkpoint(&wf, &state, &channel, &request).unwrap();
        let mut creates = Vec::new();
        let mut bases = Vec::new();
        for i in 0..7 {
            let mut s = state.clone();
            s.session_id = format!("bench{i}");
            let started = Instant::now();
            let written = store.write_checkpoint(&wf, &s, &channel, &request).unwrap();
            creates.push(started.elapsed().as_secs_f64() * 1e3);
            bases.push(PathBuf::from(written.id));
        }
        let mut resumes = Vec::new();
        let mut finishes = Vec::new();
        for base in &bases {
            let started = Instant::now();
            let loaded = checkpoint::load(base, &key(), Trust::Signed).unwrap();
            let channel = MemoryChannel::from_map(loaded.context.channel);
            resumes.push(started.elapsed().as_secs_f64() * 1e3);
            drop(channel);
            let started = Instant::now();
            let mut session = Session::resume(base, ResumeOptions::default(), options(&cache_dir())).unwrap();
            session.run().unwrap();
            finishes.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let size = std::fs::metadata(checkpoint::with_ext(&bases[0], "ctx")).unwrap().len() as f64 / 1e6;
        emit(
            &format!("checkpoint_create_{mb}mb"),
            median(creates),
            "ms",
            &format!("durable (fsync'd) write, .ctx {size:.1} MB, median of 7"),
        );
        emit(
            &format!("checkpoint_resume_{mb}mb"),
            median(resumes),
            "ms",
            "load and verify all three files, decode, rebuild the channel, median of 7",
        );
        emit(
            &format!("checkpoint_resume_finish_{mb}mb"),
            median(finishes),
            "ms",
            "Session::resume (load, verify, load the module from the compiled cache) plus running the remaining task, median of 7",
        );
    }
}

/// A 100 MB checkpoint created and resumed through a local S3-compatible
/// server (`moto_server`, started by bench/run.sh on `BENCH_S3_PORT`): the
/// same state and channel as `checkpoint_create_100mb`, committed in the
/// bucket's working copy and published (claim, module copy, a multipart
/// `.ctx`, state, commit record); the resume downloads it into a fresh
/// working copy (another machine's), then loads and verifies it.
fn bucket() {
    use graflow_host::storage::{Bucket, BucketUrl, Settings};
    let Some(port) = std::env::var("BENCH_S3_PORT").ok() else {
        eprintln!("BENCH_S3_PORT is not set (make bench starts moto_server): the bucket rows are skipped");
        return;
    };
    quiet_disk();
    let endpoint = format!("http://127.0.0.1:{port}");
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
        let request =
            format!("PUT /bench HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(reply.contains(" 200 "), "create the bench bucket: {reply}");
    }
    let open = |mirror: &Path| {
        let settings = Settings {
            endpoint: Some(endpoint.clone()),
            access_key_id: Some("bench".into()),
            secret_access_key: Some("bench".into()),
            mirror: Some(mirror.to_path_buf()),
            ..Settings::default()
        };
        Arc::new(Bucket::open_with(BucketUrl::parse("s3://bench/runs").unwrap(), settings).unwrap())
    };
    let (wf, sandbox, channel, state, request) = checkpoint_fixture(100);
    let writer_copy = tempfile::tempdir_in(repo().join("target")).unwrap();
    let bucket = open(writer_copy.path());
    let mut store = CheckpointStore::new(writer_copy.path(), sandbox.sandbox().module_code(), Some(key()))
        .publishing_to(Some(bucket.clone()));
    store.write_checkpoint(&wf, &state, &channel, &request).unwrap();
    let mut creates = Vec::new();
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut s = state.clone();
        s.session_id = format!("bench{i}");
        let started = Instant::now();
        let written = store.write_checkpoint(&wf, &s, &channel, &request).unwrap();
        creates.push(started.elapsed().as_secs_f64() * 1e3);
        let id = written.id.rsplit('/').next().unwrap().to_string();
        ids.push((s.session_id.clone(), id));
    }
    let mut resumes = Vec::new();
    for (session, id) in &ids {
        let reader_copy = tempfile::tempdir_in(repo().join("target")).unwrap();
        let reader = open(reader_copy.path());
        let started = Instant::now();
        let local = checkpoint::remote::fetch(&reader, session, id, &key(), Trust::Signed).unwrap();
        let loaded = checkpoint::load(&local, &key(), Trust::Signed).unwrap();
        let channel = MemoryChannel::from_map(loaded.context.channel);
        resumes.push(started.elapsed().as_secs_f64() * 1e3);
        drop(channel);
    }
    emit(
        "checkpoint_create_100mb_s3",
        median(creates),
        "ms",
        "the 100 MB checkpoint committed (fsync'd) in the bucket's working copy and published to a local moto_server (claim, .ctx in 8 MiB multipart parts, state, commit record last, then the presence checks), median of 7",
    );
    emit(
        "checkpoint_resume_100mb_s3",
        median(resumes),
        "ms",
        "fetch from the local moto_server into a fresh working copy (record, signature check, .ctx, state, module copy), then load and verify as from a directory, median of 7",
    );
}

/// Incremental checkpoints over a 100 MB channel: one checkpoint after a task
/// that wrote 1 KB, and a 1,000-task chain checkpointed after every task.
fn incremental() {
    quiet_disk();
    let wf = Arc::new(chain(&bench_module(), 2, "noop"));
    let sandbox = sandbox_for(&wf, &cache_dir());
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let mut channel = BTreeMap::from([("blob".to_string(), Json::encode(&"x".repeat(100 << 20)))]);
    let mut state = RunState::new(&wf, "inc".into(), Json::parse("{}").unwrap());
    let request = CheckpointRequest {
        task_id: Some("t0".into()),
        cycle_count: 1,
        elapsed_time: 0.0,
        mode: CheckpointMode::Auto,
        user_metadata: Json::null(),
    };
    let mut store = CheckpointStore::new(dir.path(), sandbox.sandbox().module_code(), Some(key()));
    store.write_checkpoint(&wf, &state, &channel, &request).unwrap();
    let mut samples = Vec::new();
    let mut size = 0;
    for i in 0..7 {
        channel.insert(format!("k{i}"), Json::encode(&"y".repeat(1022)));
        state.steps += 1;
        let started = Instant::now();
        let written = store.write_checkpoint(&wf, &state, &channel, &request).unwrap();
        samples.push(started.elapsed().as_secs_f64() * 1e3);
        size = std::fs::metadata(checkpoint::with_ext(Path::new(&written.id), "ctx")).unwrap().len();
    }
    emit(
        "checkpoint_after_1kb_100mb",
        median(samples),
        "ms",
        &format!(
            "durable (fsync'd) checkpoint after a 1 KB write over a 100 MB channel: an increment, .ctx {:.1} KB (all three files fsync'd), median of 7",
            size as f64 / 1e3
        ),
    );

    // A 1,000-task chain, each task writing 1 KB, over a 100 MB channel:
    // without checkpoints, then checkpointed after every task (the first
    // checkpoint is the full 100 MB, the rest increments), waiting for each
    // or writing behind.
    let mut wf = chain(&bench_module(), 1000, "fill");
    for t in wf.tasks.values_mut() {
        t.inputs = vec!["bytes".into()];
    }
    let blob = Json::encode(&"x".repeat(100 << 20));
    let once = |every: Option<u64>, behind: bool| {
        let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
        let opts = RunOptions {
            checkpoint_dir: every.map(|_| dir.path().to_path_buf()),
            checkpoint_every: every,
            write_behind: behind,
            ..options(&cache_dir())
        };
        let mut session = Session::from_workflow(wf.clone(), Json::parse(r#"{"bytes":1022}"#).unwrap(), opts).unwrap();
        graflow_host::channel::Channel::set(session.channel().as_ref(), "data", blob.clone());
        let started = Instant::now();
        let report = session.run().unwrap();
        let ms = started.elapsed().as_secs_f64() * 1e3;
        (ms, report.checkpoints.len())
    };
    once(None, false);
    let (none, _) = median_of_3(|| once(None, false));
    quiet_disk();
    let (sync, sync_written) = median_of_3(|| once(Some(1), false));
    quiet_disk();
    let (behind, behind_written) = median_of_3(|| once(Some(1), true));
    emit(
        "chain_1000_100mb_no_checkpoints",
        none,
        "ms",
        "1,000 tasks each writing 1 KB over a 100 MB channel, no checkpoints, median of 3",
    );
    emit(
        "chain_1000_100mb_every_1",
        sync,
        "ms",
        &format!(
            "the same with --checkpoint-every 1: {sync_written} durable checkpoints (1 full, then increments), median of 3"
        ),
    );
    emit("chain_1000_100mb_every_1_ratio", sync / none, "x", "--checkpoint-every 1 over no checkpoints");
    emit(
        "chain_1000_100mb_write_behind",
        behind,
        "ms",
        &format!(
            "the same with --checkpoint-every 1 --write-behind: {behind_written} durable checkpoints (boundaries skipped while the writer commits), median of 3"
        ),
    );
    emit(
        "chain_1000_100mb_write_behind_ratio",
        behind / none,
        "x",
        "--checkpoint-every 1 --write-behind over no checkpoints",
    );

    // The same chain resumed from a checkpoint that already holds the 100 MB
    // (so later checkpoints are increments over it from the first).
    let wf = Arc::new(wf);
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let sandbox = sandbox_for(&wf, &cache_dir());
    let state = RunState::new(&wf, "resumed".into(), Json::parse(r#"{"bytes":1022}"#).unwrap());
    let channel = BTreeMap::from([("data".to_string(), blob.clone())]);
    let request = CheckpointRequest { task_id: None, mode: CheckpointMode::Deferred, ..request.clone() };
    let mut store = CheckpointStore::new(dir.path(), sandbox.sandbox().module_code(), Some(key()));
    let base = PathBuf::from(store.write_checkpoint(&wf, &state, &channel, &request).unwrap().id);
    drop(sandbox);
    let resumed = |every: Option<u64>, behind: bool| {
        let opts = RunOptions { checkpoint_every: every, write_behind: behind, ..options(&cache_dir()) };
        let mut session = Session::resume(&base, ResumeOptions::default(), opts).unwrap();
        let started = Instant::now();
        let report = session.run().unwrap();
        (started.elapsed().as_secs_f64() * 1e3, report.checkpoints.len())
    };
    resumed(None, false);
    let (none, _) = median_of_3(|| resumed(None, false));
    quiet_disk();
    let (sync, sync_written) = median_of_3(|| resumed(Some(1), false));
    quiet_disk();
    let (behind, behind_written) = median_of_3(|| resumed(Some(1), true));
    emit(
        "chain_1000_100mb_resumed_no_checkpoints",
        none,
        "ms",
        "the 1,000-task chain resumed from a checkpoint holding the 100 MB, no further checkpoints (run only, not the load), median of 3",
    );
    emit(
        "chain_1000_100mb_resumed_every_1",
        sync,
        "ms",
        &format!("the same resumed with --checkpoint-every 1: {sync_written} durable increments, median of 3"),
    );
    emit(
        "chain_1000_100mb_resumed_every_1_ratio",
        sync / none,
        "x",
        "resumed, --checkpoint-every 1 over no checkpoints",
    );
    emit(
        "chain_1000_100mb_resumed_write_behind",
        behind,
        "ms",
        &format!(
            "the same resumed with --checkpoint-every 1 --write-behind: {behind_written} durable increments, median of 3"
        ),
    );
    emit(
        "chain_1000_100mb_resumed_write_behind_ratio",
        behind / none,
        "x",
        "resumed, --checkpoint-every 1 --write-behind over no checkpoints",
    );
}

/// Per-task durability (issue 23, item 3) against its floor: one small
/// append and `fdatasync` to a file on the disk checkpoints go to; a
/// 1,000-task chain of no-ops checkpointed after every task against the same
/// chain without checkpoints; a 16-member parallel group the same way.
fn durability() {
    use std::io::Write;
    quiet_disk();
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(dir.path().join("floor.log")).unwrap();
    let record = [b'r'; 200];
    let append = |log: &mut std::fs::File| {
        log.write_all(&record).unwrap();
        log.sync_data().unwrap();
    };
    let floor = per_op_median(50, 500, || append(&mut log));
    emit(
        "durable_append_floor",
        floor,
        "ms",
        "one 200-byte append and fdatasync to a file in target/ (the disk checkpoints go to), 500 per sample, median of 5",
    );

    let timed_with = |wf: &Arc<Workflow>, every: Option<u64>, behind: bool| {
        let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
        let opts = RunOptions {
            checkpoint_dir: every.map(|_| dir.path().to_path_buf()),
            checkpoint_every: every,
            write_behind: behind,
            ..options(&cache_dir())
        };
        let mut session = Session::from_workflow((**wf).clone(), Json::null(), opts).unwrap();
        let started = Instant::now();
        let report = session.run().unwrap();
        (started.elapsed().as_secs_f64() * 1e3, report.checkpoints.len())
    };
    let timed = |wf: &Arc<Workflow>, every: Option<u64>| timed_with(wf, every, false);
    let wf = Arc::new(chain(&bench_module(), 1000, "noop"));
    timed(&wf, None);
    let (none, _) = median_of_3(|| timed(&wf, None));
    quiet_disk();
    let (every, written) = median_of_3(|| timed(&wf, Some(1)));
    let per_task = (every - none) / 1000.0;
    emit(
        "durable_per_task",
        per_task,
        "ms",
        &format!(
            "1,000 no-op tasks with --checkpoint-every 1 ({written} durable checkpoints) over the same run without: {every:.1} ms against {none:.1} ms, per task, median of 3"
        ),
    );
    emit("durable_per_task_floors", per_task / floor, "x", "durable_per_task over durable_append_floor");
    quiet_disk();
    let (recorded, written) = median_of_3(|| timed_with(&wf, Some(1), true));
    let per_task = (recorded - none) / 1000.0;
    emit(
        "durable_record_per_task",
        per_task,
        "ms",
        &format!(
            "the same with --checkpoint-every 1 --write-behind: a durable record per task before the next, {written} checkpoints written behind: {recorded:.1} ms against {none:.1} ms, per task, median of 3"
        ),
    );
    emit("durable_record_per_task_floors", per_task / floor, "x", "durable_record_per_task over durable_append_floor");

    let mut graph = Graph::default();
    let members: Vec<String> = (0..16).map(|i| format!("p{i}")).collect();
    let mut tasks = Vec::new();
    for m in &members {
        graph.nodes.insert(m.clone(), Node::Task);
        tasks.push(task_def(m, "m", "noop", &[]));
    }
    graph.nodes.insert("group".into(), Node::Group(GroupDef { members, policy: GroupPolicy::Strict }));
    let mut group = workflow(&bench_module(), tasks, graph, "group");
    group.settings.parallelism = 16;
    let group = Arc::new(group);
    timed(&group, None);
    let (none, _) = median_of_3(|| timed(&group, None));
    quiet_disk();
    let (every, written) = median_of_3(|| timed(&group, Some(1)));
    emit(
        "durable_group_16",
        every - none,
        "ms",
        &format!(
            "one 16-member parallel group of no-ops with --checkpoint-every 1 ({written} durable checkpoint, at the join) over the same run without: {every:.2} ms against {none:.2} ms, median of 3"
        ),
    );
    emit("durable_group_16_floors", (every - none) / floor, "x", "durable_group_16 over durable_append_floor");
    // With records, a group after a first task: the first task's boundary is
    // the checkpoint the records follow, the join is one record. Its cost is
    // this run's over the same without the group, less the group's own run.
    let mut graph = Graph::default();
    let members: Vec<String> = (0..16).map(|i| format!("p{i}")).collect();
    let mut tasks = vec![task_def("first", "m", "noop", &[])];
    for m in &members {
        graph.nodes.insert(m.clone(), Node::Task);
        tasks.push(task_def(m, "m", "noop", &[]));
    }
    tasks.push(task_def("last", "m", "noop", &[]));
    graph.nodes.insert("first".into(), Node::Task);
    graph.nodes.insert("last".into(), Node::Task);
    graph.nodes.insert("group".into(), Node::Group(GroupDef { members, policy: GroupPolicy::Strict }));
    graph.successors.insert("first".into(), vec!["group".into()]);
    graph.successors.insert("group".into(), vec!["last".into()]);
    let mut with_group = workflow(&bench_module(), tasks, graph, "first");
    with_group.settings.parallelism = 16;
    let with_group = Arc::new(with_group);
    let first_only = Arc::new(chain(&bench_module(), 2, "noop"));
    let runs = |wf: &Arc<Workflow>, behind: bool| {
        median((0..7).map(|_| if behind { timed_with(wf, Some(1), true).0 } else { timed(wf, None).0 }).collect())
    };
    runs(&with_group, true);
    quiet_disk();
    let (group_rec, first_rec) = (runs(&with_group, true), runs(&first_only, true));
    let (group_none, first_none) = (runs(&with_group, false), runs(&first_only, false));
    let record = (group_rec - first_rec) - (group_none - first_none);
    emit(
        "durable_record_group_16",
        record,
        "ms",
        &format!(
            "first >> (16 parallel no-ops) >> last against first >> last, with --checkpoint-every 1 --write-behind (the join is one durable record) and without checkpoints: ({group_rec:.2} - {first_rec:.2}) - ({group_none:.2} - {first_none:.2}) ms, medians of 7"
        ),
    );
}

/// First task start: load the module (cold: empty compiled-module cache; warm:
/// cached artifact) and run one task.
fn first_task(label: &str, module: &Path, export: &str) {
    for warm in [false, true] {
        let mut samples = Vec::new();
        let runs = if warm { 7 } else { 3 };
        for _ in 0..runs {
            let cache = tempfile::tempdir_in(repo().join("target")).unwrap();
            let mut graph = Graph::default();
            graph.nodes.insert("t".into(), Node::Task);
            let wf = Arc::new(workflow(module, vec![task_def("t", "m", export, &[])], graph, "t"));
            if warm {
                drop(sandbox_for(&wf, cache.path()));
            }
            let started = Instant::now();
            let mut sandbox = sandbox_for(&wf, cache.path());
            run_once(&mut sandbox, "{}");
            samples.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let state = if warm { "warm" } else { "cold" };
        emit(
            &format!("first_task_{label}_{state}"),
            median(samples),
            "ms",
            &format!("engine + module load ({state} compiled-module cache) + first task, median of {runs}"),
        );
    }
}

/// The floor under a fresh Rust task: wasmtime alone instantiating the bench
/// component and dropping its store, with the engine a run of the Rust chain
/// gets (`sandbox::config::build_engine`: pooling, the same reset settings),
/// every import defined as a trap and no graflow code around it.
fn floor() {
    use graflow_host::sandbox::config::{EngineSettings, build_engine};
    let wf = chain(&bench_module(), 1, "noop");
    let settings = EngineSettings::for_needs(&EngineNeeds::of(&wf));
    let engine = build_engine(&settings).unwrap();
    let bytes = std::fs::read(bench_module()).unwrap();
    let component = wasmtime::component::Component::new(&engine, &bytes).unwrap();
    let mut linker = wasmtime::component::Linker::<()>::new(&engine);
    linker.define_unknown_imports_as_traps(&component).unwrap();
    let pre = linker.instantiate_pre(&component).unwrap();
    let once = || {
        let mut store = wasmtime::Store::new(&engine, ());
        store.set_epoch_deadline(u64::MAX / 2);
        if settings.fuel {
            store.set_fuel(u64::MAX).unwrap();
        }
        pre.instantiate(&mut store).unwrap();
        drop(store);
    };
    let us = per_op_median(200, 5000, once) * 1e3;
    emit(
        "wasmtime_instantiate_floor",
        us,
        "us/instance",
        "wasmtime alone: instantiate the bench component (pre-instantiated linker, imports as traps) and drop the store, the engine a Rust chain run gets, 5,000 per sample, median of 5",
    );
}

fn first_tasks() {
    first_task("rust", &bench_module(), "noop");
    first_task("python", &repo().join("tests/guests/parity_py.wasm"), "lang");
}

fn guest_languages() {
    for (label, file, n) in [
        ("rust", "parity_rust.wasm", 2000usize),
        ("python", "parity_py.wasm", 300),
        ("javascript", "parity_js.wasm", 300),
    ] {
        let wf = Arc::new(chain(&repo().join("tests/guests").join(file), n, "lang"));
        let mut sandbox = sandbox_for(&wf, &cache_dir());
        run_once(&mut sandbox, "{}");
        let us = median((0..5).map(|_| run_once(&mut sandbox, "{}").as_secs_f64() * 1e6 / n as f64).collect());
        emit(
            &format!("per_task_{label}"),
            us,
            "us/task",
            &format!("chain of {n} tasks returning a constant, fresh instance per task, median of 5"),
        );
        let mut reuse = chain(&repo().join("tests/guests").join(file), n, "lang");
        for t in reuse.tasks.values_mut() {
            t.reuse_instance = true;
        }
        let mut reused = sandbox_for(&reuse, &cache_dir());
        run_once(&mut reused, "{}");
        let us = median((0..5).map(|_| run_once(&mut reused, "{}").as_secs_f64() * 1e6 / n as f64).collect());
        emit(
            &format!("per_task_{label}_reuse"),
            us,
            "us/task",
            "the same chain with reuse_instance = true, median of 5",
        );
    }
}

fn parallel_cpu() {
    let rounds = 400_000_000u64;
    let input = format!(r#"{{"rounds":{rounds}}}"#);
    let mut group = Graph::default();
    group.nodes.insert("a".into(), Node::Task);
    group.nodes.insert("b".into(), Node::Task);
    group.nodes.insert(
        "g".into(),
        Node::Group(GroupDef { members: vec!["a".into(), "b".into()], policy: GroupPolicy::Strict }),
    );
    let mut seq = Graph::default();
    seq.nodes.insert("a".into(), Node::Task);
    seq.nodes.insert("b".into(), Node::Task);
    seq.successors.insert("a".into(), vec!["b".into()]);
    let tasks = || vec![task_def("a", "m", "cpu", &["rounds"]), task_def("b", "m", "cpu", &["rounds"])];
    let wg = Arc::new(workflow(&bench_module(), tasks(), group, "g"));
    let ws = Arc::new(workflow(&bench_module(), tasks(), seq, "a"));
    let mut grouped = sandbox_for(&wg, &cache_dir());
    let mut sequence = sandbox_for(&ws, &cache_dir());
    let par = median((0..5).map(|_| run_once(&mut grouped, &input).as_secs_f64() * 1e3).collect());
    let ser = median((0..5).map(|_| run_once(&mut sequence, &input).as_secs_f64() * 1e3).collect());
    emit("cpu_pair_parallel", par, "ms", "two CPU-bound tasks in a parallel group, median of 5");
    emit("cpu_pair_sequence", ser, "ms", "the same two tasks in sequence, median of 5");
    emit("cpu_pair_speedup", ser / par, "x", "sequence time / parallel time");
}

/// Scaling rows: the per-task cost of a chain with a 1 MB and a 100 MB
/// channel, a group of 1,000 members, a 10,000-iteration loop, and loading a
/// 10,000-task flow file.
fn scaling() {
    let wf = Arc::new(chain(&bench_module(), 1000, "noop"));
    let mut session = sandbox_for(&wf, &cache_dir());
    for mb in [1usize, 100] {
        let blob = Json::encode(&"x".repeat(mb << 20));
        let mut once = || {
            session.restart(Json::parse("{}").unwrap()).unwrap();
            graflow_host::channel::Channel::set(session.channel().as_ref(), "blob", blob.clone());
            let started = Instant::now();
            session.run().unwrap();
            started.elapsed().as_secs_f64() * 1e6 / 1000.0
        };
        once();
        let us = median((0..5).map(|_| once()).collect());
        emit(
            &format!("chain_1000_channel_{mb}mb"),
            us,
            "us/task",
            &format!("1,000 no-op tasks over a channel holding a {mb} MB value, median of 5"),
        );
    }
    let group = Arc::new(fan(1000, "noop", &[], 4));
    let mut session = sandbox_for(&group, &cache_dir());
    run_once(&mut session, "{}");
    let ms = median((0..5).map(|_| run_once(&mut session, "{}").as_secs_f64() * 1e3).collect());
    emit(
        "group_1000",
        ms * 1000.0 / 1002.0,
        "us/task",
        &format!("src >> (1,000 parallel no-ops, parallelism 4) >> sink: {ms:.1} ms per run, median of 5"),
    );
    let mut graph = Graph::default();
    graph.nodes.insert("it".into(), Node::Task);
    let mut def = task_def("it", "m", "iterate", &["times"]);
    def.max_cycles = 20_000;
    let wf = Arc::new(workflow(&bench_module(), vec![def], graph, "it"));
    let mut session = sandbox_for(&wf, &cache_dir());
    let input = r#"{"times":10000}"#;
    run_once(&mut session, input);
    let us = median((0..3).map(|_| run_once(&mut session, input).as_secs_f64() * 1e6 / 10_000.0).collect());
    emit("next_iteration_10000", us, "us/iteration", "one task, 10,000 runs through next_iteration, median of 3");
    // A 10,000-task chain as a workflow file: read, parse, validate, build
    // the graph, load the (cached) module.
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    std::fs::copy(bench_module(), dir.path().join("bench.wasm")).unwrap();
    let names: Vec<String> = (0..10_000).map(|i| format!("t{i}")).collect();
    let mut text = format!(
        "[workflow]\nflow = \"{}\"\nmax_steps = 100000\n\n[modules]\nm = \"bench.wasm\"\n\n",
        names.join(" >> ")
    );
    for n in &names {
        text.push_str(&format!("[tasks.{n}]\nexport = \"noop\"\n"));
    }
    let path = dir.path().join("workflow.toml");
    std::fs::write(&path, text).unwrap();
    let load = || {
        let started = Instant::now();
        let s = Session::start(&path, Json::null(), options(&cache_dir())).unwrap();
        let ms = started.elapsed().as_secs_f64() * 1e3;
        drop(s);
        ms
    };
    load();
    let ms = median((0..5).map(|_| load()).collect());
    emit(
        "flow_file_10000",
        ms,
        "ms",
        "Session::start of a 10,000-task chain workflow file (read, parse, validate, graph, cached module), median of 5",
    );
}

/// `graflow-host worker` processes on the bench Redis, killed when dropped.
struct Workers(Vec<std::process::Child>);

impl Workers {
    fn start(url: &str, n: usize, concurrency: usize) -> Workers {
        let bin = repo().join("target/release/graflow-host");
        let procs = (0..n)
            .map(|_| {
                std::process::Command::new(&bin)
                    .args(["worker", "--redis", url, "--concurrency", &concurrency.to_string(), "-q"])
                    .env("GRAFLOW_CACHE_DIR", cache_dir())
                    .spawn()
                    .unwrap_or_else(|e| panic!("{}: {e} (run `make host`)", bin.display()))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        Workers(procs)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// `src >> (n members running `export`) >> sink` with `parallelism`.
fn fan(n: usize, export: &str, inputs: &[&str], parallelism: usize) -> Workflow {
    let mut graph = Graph::default();
    let mut tasks = vec![task_def("src", "m", "noop", &[]), task_def("sink", "m", "noop", &[])];
    let members: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    for m in &members {
        graph.nodes.insert(m.clone(), Node::Task);
        tasks.push(task_def(m, "m", export, inputs));
    }
    graph.nodes.insert("src".into(), Node::Task);
    graph.nodes.insert("sink".into(), Node::Task);
    graph.nodes.insert("group".into(), Node::Group(GroupDef { members, policy: GroupPolicy::Strict }));
    graph.successors.insert("src".into(), vec!["group".into()]);
    graph.successors.insert("group".into(), vec!["sink".into()]);
    let mut wf = workflow(&bench_module(), tasks, graph, "src");
    wf.settings.parallelism = parallelism;
    wf
}

/// Distributed runs through the Redis of `BENCH_REDIS_PORT` (bench/run.sh
/// starts one and runs Graflow's Redis workers on it too).
fn distributed() {
    let Ok(port) = std::env::var("BENCH_REDIS_PORT") else {
        eprintln!("distributed: BENCH_REDIS_PORT is not set (bench/run.sh starts a redis-server); skipped");
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let redis_opts = || RunOptions {
        redis: Some(graflow_host::distributed::RedisOptions::new(url.clone())),
        ..options(&cache_dir())
    };
    let noop = Arc::new(fan(2000, "noop", &[], 16));
    for n_workers in [1usize, 2] {
        let _workers = Workers::start(&url, n_workers, 4);
        let mut session = Session::from_workflow((*noop).clone(), Json::null(), redis_opts()).unwrap();
        run_once(&mut session, "{}");
        let secs = median((0..3).map(|_| run_once(&mut session, "{}").as_secs_f64()).collect());
        emit(
            &format!("redis_noop_{n_workers}w"),
            secs * 1e6 / 2002.0,
            "us/task",
            &format!(
                "src >> (2000 no-op members, parallelism 16) >> sink on {n_workers} graflow-host worker \
                 (--concurrency 4): {secs:.2} s, median of 3"
            ),
        );
    }
    let rounds = 100_000_000u64;
    let input = format!(r#"{{"rounds":{rounds}}}"#);
    let cpu = Arc::new(fan(16, "cpu", &["rounds"], 16));
    let mut times = Vec::new();
    for n_workers in [1usize, 2] {
        let _workers = Workers::start(&url, n_workers, 1);
        let mut session = Session::from_workflow((*cpu).clone(), Json::null(), redis_opts()).unwrap();
        run_once(&mut session, &input);
        let ms = median((0..3).map(|_| run_once(&mut session, &input).as_secs_f64() * 1e3).collect());
        times.push(ms);
        emit(
            &format!("redis_cpu_{n_workers}w"),
            ms,
            "ms",
            &format!(
                "src >> (16 CPU-bound members, {rounds} rounds each) >> sink on {n_workers} workers \
                 (--concurrency 1), median of 3"
            ),
        );
    }
    emit("redis_cpu_speedup", times[0] / times[1], "x", "1 worker time / 2 workers time");
}

/// Peak RSS of this process after a 10,000-task chain (run this alone).
/// A long agent loop, as a user would run one: one task iterating `n` times
/// through `next_iteration`, `--checkpoint-every 1000` into a directory.
/// Per-iteration time, the peak RSS of the process (run alone: `make bench`
/// runs each size in its own process) and the size of the last checkpoint
/// (its three files).
fn long_loop(n: u64) {
    quiet_disk();
    let mut graph = Graph::default();
    graph.nodes.insert("it".into(), Node::Task);
    let mut def = task_def("it", "m", "iterate", &["times"]);
    def.max_cycles = u32::MAX;
    let wf = workflow(&bench_module(), vec![def], graph, "it");
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let mut opts = options(&cache_dir());
    opts.checkpoint_dir = Some(dir.path().to_path_buf());
    opts.checkpoint_every = Some(1000);
    let input = format!(r#"{{"times":{n}}}"#);
    let mut session = Session::from_workflow(wf, Json::parse(input.as_str()).unwrap(), opts).unwrap();
    let started = Instant::now();
    session.run().unwrap();
    let us = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).unwrap();
    let all = checkpoint::list(dir.path()).unwrap();
    let last = &all.last().unwrap().base;
    let size: u64 = ["ctx", "state.json", "meta.json"]
        .iter()
        .map(|e| std::fs::metadata(checkpoint::with_ext(last, e)).map(|m| m.len()).unwrap_or(0))
        .sum();
    let label = match n {
        10_000 => "10k",
        100_000 => "100k",
        1_000_000 => "1m",
        _ => "n",
    };
    emit(
        &format!("long_loop_{label}_per_iteration"),
        us,
        "us/iteration",
        &format!(
            "{n} iterations of one task through next_iteration, --checkpoint-every 1000 ({} checkpoints), default keep_iteration_results (1,000), one run",
            all.len()
        ),
    );
    emit(
        &format!("long_loop_{label}_rss"),
        hwm.parse::<f64>().unwrap() / 1024.0,
        "MiB",
        "peak RSS (VmHWM) of the process",
    );
    emit(
        &format!("long_loop_{label}_checkpoint_kb"),
        size as f64 / 1024.0,
        "KiB",
        "the last checkpoint's three files (the full or incremental checkpoint at the end)",
    );
}

fn rss_10k() {
    let wf = Arc::new(chain(&bench_module(), 10_000, "noop"));
    let mut sandbox = sandbox_for(&wf, &cache_dir());
    run_once(&mut sandbox, "{}");
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).unwrap();
    emit(
        "rss_chain_10000",
        hwm.parse::<f64>().unwrap() / 1024.0,
        "MiB",
        "peak RSS (VmHWM) of a process that built and ran the 10,000-task chain",
    );
}

/// One allowed request per task: a chain of 200 tasks, each a GET through
/// the gate (grant check, name already an IP literal, connect, request,
/// response, event) to the local server `make bench` starts
/// (`BENCH_HTTP_PORT`), a new connection each, like `requests.get`.
fn outbound() {
    let Ok(port) = std::env::var("BENCH_HTTP_PORT") else {
        emit("http_get_per_task", 0.0, "error", "BENCH_HTTP_PORT is not set (make bench starts the server)");
        return;
    };
    let n = 200;
    let mut wf = chain(&bench_module(), n, "get");
    for t in wf.tasks.values_mut() {
        t.inputs = vec!["url".into()];
    }
    let origin = format!("http://127.0.0.1:{port}");
    let grant = graflow_host::outbound::Grant {
        allow: vec![graflow_host::outbound::OriginPattern::parse(&origin).unwrap()],
        allow_networks: vec![],
    };
    let policy = graflow_host::outbound::Policy {
        tasks: wf.tasks.keys().map(|k| (k.clone(), grant.clone())).collect(),
        bounds: graflow_host::outbound::NetBounds { max_connections: u64::MAX, ..Default::default() },
        ..Default::default()
    };
    wf.outbound = Arc::new(policy);
    let mut session = sandbox_for(&wf, &cache_dir());
    let input = serde_json::json!({"url": format!("{origin}/ok")}).to_string();
    run_once(&mut session, &input);
    let us = median((0..3).map(|_| run_once(&mut session, &input).as_secs_f64() * 1e6 / n as f64).collect());
    emit(
        "http_get_per_task",
        us,
        "us/task",
        &format!("{n} Rust tasks, each one GET through the gate to a local server (new connection each), median of 3"),
    );
}

fn main() {
    let all: &[(&str, fn())] = &[
        ("chains", chains),
        ("chain_reuse", chain_reuse),
        ("fan_out", fan_out),
        ("iterations", iterations),
        ("checkpoints", checkpoints),
        ("bucket", bucket),
        ("incremental", incremental),
        ("durability", durability),
        ("first_tasks", first_tasks),
        ("floor", floor),
        ("guest_languages", guest_languages),
        ("parallel_cpu", parallel_cpu),
        ("scaling", scaling),
        ("distributed", distributed),
        ("rss_10k", rss_10k),
        ("long_loop_10k", || long_loop(10_000)),
        ("long_loop_100k", || long_loop(100_000)),
        ("long_loop_1m", || long_loop(1_000_000)),
        ("outbound", outbound),
        ("tracing", tracing),
    ];
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    for (name, f) in all {
        // Peak RSS is per process: these run alone (make bench runs each).
        let alone = *name == "rss_10k" || name.starts_with("long_loop");
        if (wanted.is_empty() && !alone) || wanted.iter().any(|w| w == name) {
            f();
        }
    }
}
