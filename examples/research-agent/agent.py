"""A research agent: one model call per iteration, a tool over HTTP when the
model asks for one, a checkpoint each round, and the answer when the model
stops calling tools.

The model and the knowledge base are reached through the host's gate: the
workflow grants their origins, and the API key is attached by the host
(the task never sees it). See docs/network.md.
"""
import json

from graflow import task, channel, control, llm, http, log, TaskError, WitWorld  # noqa: F401

TOOLS = [{
    "type": "function",
    "function": {
        "name": "fetch_page",
        "description": "Fetch the knowledge-base page about one topic (a single word).",
        "parameters": {
            "type": "object",
            "properties": {"topic": {"type": "string"}},
            "required": ["topic"],
        },
    },
}]

SYSTEM = ("You answer questions using the knowledge base. Call fetch_page for each topic you need, "
          "then answer in two sentences, citing the topics you used.")


@task
def research(question: str, kb_url: str) -> dict:
    """One round of the agent loop (iterates until the model answers)."""
    messages = channel.get("messages") or [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": question},
    ]
    answer = llm.chat(messages, tools=TOOLS, temperature=0)
    messages.append(answer["message"])
    round_no = control.info().cycle_count
    if answer["tool_calls"]:
        for call in answer["tool_calls"]:
            if call["name"] != "fetch_page":
                raise TaskError(f"the model asked for an unknown tool {call['name']!r}")
            topic = json.loads(call["arguments"] or "{}").get("topic", "")
            page = http.get(f"{kb_url.rstrip('/')}/{topic}", timeout=20)
            log.info(f"round {round_no}: fetched {topic!r} ({page.status}, {len(page.body)} bytes)")
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": page.text[:4000]})
        channel.set("messages", messages)
        control.checkpoint({"round": round_no})
        control.next_iteration({"question": question, "kb_url": kb_url})
        return {"round": round_no, "status": "researching"}
    channel.set("answer", answer["content"])
    channel.set("rounds", round_no)
    return {"round": round_no, "status": "answered"}


@task
def report() -> dict:
    """The answer, with the rounds it took and the tokens spent."""
    return {"answer": channel.get("answer"), "rounds": channel.get("rounds")}
