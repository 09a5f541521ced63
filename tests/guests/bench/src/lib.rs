//! Benchmark tasks: a no-op, CPU-bound work, an iterating task, a channel filler.
use graflow_guest::prelude::*;

fn noop(_: Value) -> Result<(), TaskError> {
    Ok(())
}

#[derive(Deserialize)]
struct Cpu {
    rounds: u64,
}

fn cpu(input: Cpu) -> Result<u64, TaskError> {
    let mut h: u64 = 0xcbf29ce484222325;
    for i in 0..input.rounds {
        h = std::hint::black_box(h ^ i).wrapping_mul(0x100000001b3);
    }
    Ok(h)
}

#[derive(Deserialize)]
struct Iterate {
    #[serde(default)]
    n: u64,
    times: u64,
}

fn iterate(input: Iterate) -> Result<u64, TaskError> {
    if input.n + 1 < input.times {
        control::next_iteration(&json!({"n": input.n + 1, "times": input.times}))?;
    }
    Ok(input.n)
}

#[derive(Deserialize)]
struct Fill {
    bytes: usize,
}

fn fill(input: Fill) -> Result<(), TaskError> {
    channel::set("blob", &"x".repeat(input.bytes))
}

#[derive(Deserialize)]
struct Get {
    url: String,
}

/// One GET through the host's gate (`make bench`'s outbound row).
fn get(input: Get) -> Result<u16, TaskError> {
    let r = http::get(&input.url)?;
    if r.status != 200 {
        return Err(TaskError::failed(format!("status {}", r.status)));
    }
    Ok(r.status)
}

graflow_guest::export_tasks!(noop, cpu, iterate, fill, get);
