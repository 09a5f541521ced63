//! Tasks that share state through the channel rather than results: a list
//! built with append, a counter with atomic-add, a value with set/get.
use graflow_guest::prelude::*;

#[derive(Deserialize)]
struct Words {
    text: String,
}

fn split(input: Words) -> Result<usize, TaskError> {
    for word in input.text.split_whitespace() {
        channel::append("words", &word.to_lowercase())?;
    }
    channel::set("source", &input.text)?;
    Ok(input.text.split_whitespace().count())
}

fn count_a(_: Value) -> Result<(), TaskError> {
    let words: Vec<String> = channel::get("words")?.unwrap_or_default();
    let n = words.iter().filter(|w| w.contains('a')).count();
    channel::atomic_add("letters_seen", n as f64)?;
    channel::set("with_a", &n)?;
    Ok(())
}

fn count_e(_: Value) -> Result<(), TaskError> {
    let words: Vec<String> = channel::get("words")?.unwrap_or_default();
    let n = words.iter().filter(|w| w.contains('e')).count();
    channel::atomic_add("letters_seen", n as f64)?;
    channel::set("with_e", &n)?;
    Ok(())
}

fn report(_: Value) -> Result<Value, TaskError> {
    let words: Vec<String> = channel::get("words")?.unwrap_or_default();
    Ok(json!({
        "words": words.len(),
        "with_a": channel::get::<u64>("with_a")?,
        "with_e": channel::get::<u64>("with_e")?,
        "letters_seen": channel::get::<u64>("letters_seen")?,
        "keys": channel::keys(),
    }))
}

graflow_guest::export_tasks!(split, count_a, count_e, report);
