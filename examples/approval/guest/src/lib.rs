//! A deploy pipeline that asks a person before it deploys:
//! `build >> test >> approve >> deploy`.
use graflow_guest::prelude::*;
use std::time::Duration;

#[derive(Deserialize)]
struct Build {
    version: String,
}

fn build(input: Build) -> Result<Value, TaskError> {
    channel::set("artifact", &format!("app-{}.tar.gz", input.version))?;
    Ok(json!({"version": input.version, "artifact": format!("app-{}.tar.gz", input.version)}))
}

fn test(_: Value) -> Result<Value, TaskError> {
    Ok(json!({"passed": 42, "failed": 0}))
}

#[derive(Deserialize)]
struct Approve {
    build: Value,
    test: Value,
    /// Seconds to wait for an answer before the run pauses (default 60).
    #[serde(default = "minute")]
    wait_secs: u64,
}

fn minute() -> u64 {
    60
}

/// Asks a person; the answer (and who approved) goes into the channel.
fn approve(input: Approve) -> Result<Value, TaskError> {
    let prompt = format!("Deploy {} to production?", input.build["version"].as_str().unwrap_or("?"));
    let q = feedback::Ask::new(&prompt)
        .metadata(json!({"build": input.build, "tests": input.test}))
        .timeout(Duration::from_secs(input.wait_secs));
    let (approved, reason) = feedback::approval_with(&q)?;
    channel::set("approved", &approved)?;
    Ok(json!({"approved": approved, "reason": reason}))
}

#[derive(Deserialize)]
struct Deploy {
    approve: Value,
}

fn deploy(input: Deploy) -> Result<String, TaskError> {
    if input.approve["approved"].as_bool() == Some(true) {
        let artifact: Option<String> = channel::get("artifact")?;
        log::info(&format!("deploying {}", artifact.unwrap_or_default()));
        Ok("DEPLOYED".into())
    } else {
        let why = input.approve["reason"].as_str().unwrap_or("no reason given");
        Ok(format!("NOT DEPLOYED: {why}"))
    }
}

graflow_guest::export_tasks!(
    build: "Builds the artifact",
    test: "Runs the tests",
    approve: "Asks a person to approve the deploy",
    deploy: "Deploys if approved"
);
