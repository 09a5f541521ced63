//! Graflow's order state machine: one task moves an order NEW -> VALIDATED ->
//! PAID -> SHIPPED, one stage per iteration, with a checkpoint after each.
//! Each stage does some CPU work, so there is time to interrupt the run.
use graflow_guest::prelude::*;

#[derive(Deserialize)]
struct Order {
    order_id: String,
    #[serde(default = "default_work")]
    work: u64,
}

fn default_work() -> u64 {
    30_000_000
}

/// Deterministic busy work standing in for a payment or shipping call.
fn work(rounds: u64, seed: &str) -> u64 {
    let mut h: u64 = seed.bytes().fold(0xcbf29ce484222325, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    for i in 0..rounds {
        h = std::hint::black_box(h.rotate_left(5) ^ i).wrapping_mul(0x100000001b3);
    }
    h
}

fn process_order(input: Order) -> Result<Value, TaskError> {
    let state: String = channel::get("order_state")?.unwrap_or_else(|| "NEW".into());
    let (next, stage) = match state.as_str() {
        "NEW" => ("VALIDATED", "validation_complete"),
        "VALIDATED" => ("PAID", "payment_complete"),
        "PAID" => ("SHIPPED", "shipping_complete"),
        _ => return Ok(json!("ORDER_COMPLETE")),
    };
    let receipt = work(input.work, &format!("{}-{next}", input.order_id));
    channel::set("order_state", next)?;
    channel::append("history", &json!({"state": next, "receipt": format!("{receipt:016x}")}))?;
    log::info(&format!("order {} is {next}", input.order_id));
    control::checkpoint(&json!({"stage": stage, "order_state": next}))?;
    control::next_iteration(&json!({"order_id": input.order_id, "work": input.work}))?;
    Ok(json!(next))
}

graflow_guest::export_tasks!(process_order: "Advances the order one state and checkpoints");
