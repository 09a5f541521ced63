"""The parity tasks in Python; parity/src/lib.rs and parity.js implement the same ones."""
from graflow import task, channel, results, control, feedback, http, llm, HttpError, LlmError, Retryable, WitWorld  # noqa: F401

LANG = "python"


@task
def produce(seed: int) -> dict:
    channel.set("seen", seed)
    return {"value": seed * 2}


@task
def consume(produce: dict) -> int:
    return produce["value"] + channel.get("seen", 0) + results.get("produce", {"value": 0})["value"]


@task
def checkpointer() -> str:
    control.checkpoint({"lang": LANG})
    return LANG


@task
def looper(n: int = 0) -> dict:
    if n < 2:
        control.next_iteration({"n": n + 1})
    return {"n": n, "cycle": control.info().cycle_count}


@task
def forever() -> int:
    control.next_iteration({})
    return control.info().cycle_count


@task
def flaky() -> int:
    retry = control.info().retry_count
    if retry < 2:
        raise Retryable(f"try again ({LANG})")
    return retry + 1


@task
def lang() -> str:
    return LANG


@task
def crash() -> int:
    return 1 // 0


@task
def not_json() -> object:
    return {"items": {1, 2}}


@task
def ask(kind: str, timeout: int = 0) -> dict:
    colors = ["red", "green", "blue"]
    if kind == "approval":
        answer = feedback.approval("ship it?", timeout=timeout)
    elif kind == "text":
        answer = feedback.text("name?", timeout=timeout)
    elif kind == "selection":
        answer = feedback.select("pick", colors, timeout=timeout)
    elif kind == "multi-selection":
        answer = feedback.select_many("pick", colors, timeout=timeout)
    else:
        answer = feedback.custom("any JSON?", timeout=timeout)
    return {"lang": LANG, "answer": answer}


@task
def net(base: str) -> dict:
    """GET and POST through the gate, a denied origin, a model call with a tool, a token budget."""
    got = http.get(base + "/echo")
    posted = http.post(base + "/echo", json={"lang": LANG}).json()
    try:
        http.get(base.replace("127.0.0.1", "localhost") + "/echo")
        denied = "none"
    except HttpError as e:
        denied = e.kind
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "weather in Paris?"}]
    first = llm.chat(messages, tools=tools)
    call = first["tool_calls"][0]
    messages += [first["message"], {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]
    final = llm.chat(messages, tools=tools)
    try:
        for _ in range(10):
            llm.chat([{"role": "user", "content": "more"}])
        budget = "none"
    except LlmError as e:
        budget = e.kind
    return {"lang": LANG, "get": got.status, "post": [posted["method"], posted["body"]], "denied": denied,
            "tool": call["name"], "final": final["content"], "budget": budget}
