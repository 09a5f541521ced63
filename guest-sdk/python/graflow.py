"""graflow-host task SDK for Python (componentize-py), over wit/graflow.wit.

    from graflow import task, workflow, channel, control, log, TaskError, Retryable

    @task(max_retries=3)
    def fetch() -> list:
        return [1, 2, 3]

    @task
    def total(fetch: list) -> int:          # declared inputs: the parameter names
        channel.set("n", len(fetch))
        return sum(fetch)

    workflow(flow="fetch >> total")

`graflow-host run app.py` builds and runs that file.

A task is a function whose parameters are its declared inputs, filled by
automatic data flow (like Graflow's keyword resolution); parameters with
defaults are optional. Its return value is the task's result (JSON). Raising
``TaskError`` fails the task permanently; ``Retryable`` (or any other
exception) is retried while the task's max_retries allows.

``workflow(flow=..., name=..., max_steps=...)`` declares the component's own
workflow; the settings given to ``@task`` (max_retries, max_cycles,
timeout_ms, memory_mb, fuel) are defaults that a workflow file naming this
component may override. Nothing here grants a capability: directories,
environment and network come only from a workflow file or the command line.
"""

import inspect
import json
import traceback
from typing import Any, Callable, Dict, List, Optional

import wit_world
from componentize_py_types import Err
from wit_world.imports import channel as _channel
from wit_world.imports import control as _control
from wit_world.imports import feedback as _feedback
from wit_world.imports import http as _http
from wit_world.imports import llm as _llm
from wit_world.imports import logging as _logging
from wit_world.imports import results as _results
from wit_world.imports import types as _types

__all__ = ["task", "workflow", "channel", "results", "control", "feedback", "http", "llm", "log", "TaskError", "Retryable",
           "HttpError", "LlmError", "WitWorld"]

_REGISTRY: Dict[str, "_Task"] = {}
_WORKFLOW: Dict[str, Any] = {}
_SETTINGS = ("max_retries", "max_cycles", "timeout_ms", "memory_mb", "fuel")


def _count(what: str, value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a whole number >= 0, not {value!r}")
    return value


class TaskError(Exception):
    """A permanent failure: never retried."""


class Retryable(Exception):
    """A transient failure: retried while the task's max_retries allows."""


class _Task:
    def __init__(self, fn: Callable, name: str, description: str, inputs: Optional[List[str]],
                 settings: Dict[str, Optional[int]]):
        self.fn = fn
        self.name = name
        self.settings = {k: _count(f"task '{name}': {k}", v) for k, v in settings.items()}
        self.description = description or (inspect.getdoc(fn) or "").split("\n")[0]
        params = inspect.signature(fn).parameters.values()
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        self.params = [p for p in params if p.kind in kinds]
        self.takes_all = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params)
        self.inputs = inputs if inputs is not None else [p.name for p in self.params]

    def call(self, input: Any) -> Any:
        if not isinstance(input, dict):
            return self.fn(input)
        if self.takes_all:
            return self.fn(**input)
        missing = [p.name for p in self.params if p.default is inspect.Parameter.empty and p.name not in input]
        if missing:
            raise TaskError(f"task '{self.name}' is missing its input(s): {', '.join(missing)}")
        return self.fn(**{p.name: input[p.name] for p in self.params if p.name in input})


def task(fn: Optional[Callable] = None, *, name: Optional[str] = None, description: str = "",
         inputs: Optional[List[str]] = None, max_retries: Optional[int] = None, max_cycles: Optional[int] = None,
         timeout_ms: Optional[int] = None, memory_mb: Optional[int] = None, fuel: Optional[int] = None):
    """Register a task: ``@task``, ``@task(name="x")``, ``@task(inputs=[...])``,
    ``@task(max_retries=3, timeout_ms=5000)``. The settings are defaults: a
    workflow file's value wins where it gives one."""
    settings = {"max_retries": max_retries, "max_cycles": max_cycles, "timeout_ms": timeout_ms,
                "memory_mb": memory_mb, "fuel": fuel}

    def register(f: Callable) -> Callable:
        t = _Task(f, name or f.__name__, description, inputs, settings)
        _REGISTRY[t.name] = t
        return f

    return register(fn) if fn is not None else register


def workflow(flow: Optional[str] = None, *, name: Optional[str] = None, max_steps: Optional[int] = None) -> None:
    """Declare this component's workflow: ``workflow(flow="fetch >> (clean | enrich) >> store")``.
    ``graflow-host run app.py`` runs it; a workflow file that names this
    component may give its own flow and settings, which win."""
    for what, value in (("flow", flow), ("name", name)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"workflow: {what} must be a string, not {type(value).__name__} {value!r}")
    _WORKFLOW.clear()
    _WORKFLOW.update(flow=flow, name=name, max_steps=_count("workflow: max_steps", max_steps))


def _unwrap(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Err as e:
        raise TaskError(str(e.value)) from None


def _decode(text: Optional[str], default: Any) -> Any:
    return default if text is None else json.loads(text)


class channel:
    """The workflow's shared key-value store; values are JSON."""

    @staticmethod
    def get(key: str, default: Any = None) -> Any:
        return _decode(_channel.get(key), default)

    @staticmethod
    def set(key: str, value: Any) -> None:
        _unwrap(lambda: _channel.set(key, json.dumps(value)))

    @staticmethod
    def delete(key: str) -> bool:
        return _channel.delete(key)

    @staticmethod
    def exists(key: str) -> bool:
        return _channel.exists(key)

    @staticmethod
    def keys() -> List[str]:
        return _channel.keys()

    @staticmethod
    def append(key: str, value: Any) -> int:
        return _unwrap(lambda: _channel.append(key, json.dumps(value)))

    @staticmethod
    def prepend(key: str, value: Any) -> int:
        return _unwrap(lambda: _channel.prepend(key, json.dumps(value)))

    @staticmethod
    def atomic_add(key: str, amount: float = 1) -> float:
        return _unwrap(lambda: _channel.atomic_add(key, float(amount)))


class results:
    """Task results."""

    @staticmethod
    def set(value: Any) -> None:
        _unwrap(lambda: _results.set_result(json.dumps(value)))

    @staticmethod
    def get(task_id: str, default: Any = None) -> Any:
        return _decode(_results.get_result(task_id), default)


class control:
    """Steering the workflow."""

    @staticmethod
    def next_task(name: str, input: Any = None) -> str:
        return _unwrap(lambda: _control.next_task(name, json.dumps(input), False))

    @staticmethod
    def goto(name: str, input: Any = None) -> str:
        return _unwrap(lambda: _control.next_task(name, json.dumps(input), True))

    @staticmethod
    def next_iteration(input: Any = None) -> str:
        return _unwrap(lambda: _control.next_iteration(json.dumps(input)))

    @staticmethod
    def can_iterate() -> bool:
        return _control.can_iterate()

    @staticmethod
    def terminate_workflow(message: str = "") -> None:
        _control.terminate_workflow(message)

    @staticmethod
    def cancel_workflow(message: str = "") -> None:
        _control.cancel_workflow(message)

    @staticmethod
    def checkpoint(metadata: Optional[dict] = None) -> None:
        _unwrap(lambda: _control.request_checkpoint(json.dumps(metadata or {})))

    @staticmethod
    def info() -> _types.TaskInfo:
        return _control.info()


class feedback:
    """Asking a person (human in the loop).

    Each helper waits up to ``timeout`` seconds for an answer; when nobody
    answers in time the run pauses durably (the call does not return), and
    after the answer the run resumes: the task runs again from its start and
    the same question gets the answer at once. See docs/human-in-the-loop.md.
    """

    DEFAULT_TIMEOUT = 180

    @staticmethod
    def ask(kind: str, prompt: str, options: Optional[List[str]] = None, metadata: Optional[dict] = None,
            timeout: float = DEFAULT_TIMEOUT) -> Any:
        """The raw answer object of a request of ``kind`` (approval, text,
        selection, multi-selection, custom)."""
        kinds = {
            "approval": _feedback.FeedbackKind.APPROVAL,
            "text": _feedback.FeedbackKind.TEXT,
            "selection": _feedback.FeedbackKind.SELECTION,
            "multi-selection": _feedback.FeedbackKind.MULTI_SELECTION,
            "custom": _feedback.FeedbackKind.CUSTOM,
        }
        if kind not in kinds:
            raise TaskError(f"unknown feedback kind {kind!r} (one of {', '.join(kinds)})")
        req = _feedback.FeedbackRequest(
            kind=kinds[kind],
            prompt=str(prompt),
            options=[str(o) for o in (options or [])],
            metadata=json.dumps(metadata),
            timeout_secs=max(0, min(int(timeout), 2**32 - 1)),
        )
        return json.loads(_unwrap(lambda: _feedback.request(req)))

    @staticmethod
    def approval(prompt: str, timeout: float = DEFAULT_TIMEOUT, metadata: Optional[dict] = None) -> bool:
        return bool(feedback.ask("approval", prompt, None, metadata, timeout)["approved"])

    @staticmethod
    def text(prompt: str, timeout: float = DEFAULT_TIMEOUT, metadata: Optional[dict] = None) -> str:
        return str(feedback.ask("text", prompt, None, metadata, timeout)["text"])

    @staticmethod
    def select(prompt: str, options: List[str], timeout: float = DEFAULT_TIMEOUT,
               metadata: Optional[dict] = None) -> str:
        return str(feedback.ask("selection", prompt, options, metadata, timeout)["selected"])

    @staticmethod
    def select_many(prompt: str, options: List[str], timeout: float = DEFAULT_TIMEOUT,
                    metadata: Optional[dict] = None) -> List[str]:
        return list(feedback.ask("multi-selection", prompt, options, metadata, timeout)["selected"])

    @staticmethod
    def custom(prompt: str, timeout: float = DEFAULT_TIMEOUT, metadata: Optional[dict] = None) -> Any:
        return feedback.ask("custom", prompt, None, metadata, timeout)["value"]


class _NetError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class HttpError(_NetError):
    """A request that got no response: ``kind`` is denied, limit, timeout,
    invalid or failed."""


class LlmError(_NetError):
    """A model call that failed: ``kind`` is denied, limit, provider,
    invalid or failed."""


def _variant_error(e: Err, cls: type) -> Exception:
    v = e.value
    kind = type(v).__name__.rsplit("_", 1)[-1].lower()
    return cls(kind, str(getattr(v, "value", v)))


class Response:
    """A whole HTTP response."""

    def __init__(self, status: int, headers: List[tuple], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> Optional[str]:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


class http:
    """Outbound HTTP through the host's gate: only the origins the workflow
    grants this task are reachable; headers the workflow attaches (API keys)
    are added by the host and never visible here. See docs/network.md."""

    @staticmethod
    def request(method: str, url: str, headers: Optional[Dict[str, str]] = None, body: bytes = b"",
                json_body: Any = None, timeout: Optional[float] = None, follow_redirects: bool = True) -> Response:
        hs = [(str(k), str(v)) for k, v in (headers or {}).items()]
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            hs.append(("content-type", "application/json"))
        if isinstance(body, str):
            body = body.encode()
        req = _http.Request(
            method=method.upper(), url=url, headers=hs, body=bytes(body),
            timeout_ms=None if timeout is None else max(1, min(int(timeout * 1000), 2**32 - 1)),
            follow_redirects=follow_redirects,
        )
        try:
            r = _http.send(req)
        except Err as e:
            raise _variant_error(e, HttpError) from None
        return Response(r.status, [(k, v) for k, v in r.headers], bytes(r.body))

    @staticmethod
    def get(url: str, headers: Optional[Dict[str, str]] = None, timeout: Optional[float] = None) -> Response:
        return http.request("GET", url, headers=headers, timeout=timeout)

    @staticmethod
    def post(url: str, json: Any = None, data: bytes = b"", headers: Optional[Dict[str, str]] = None,
             timeout: Optional[float] = None) -> Response:
        return http.request("POST", url, headers=headers, body=data, json_body=json, timeout=timeout)


class llm:
    """A language model configured by the workflow (``[workflow.llm]``),
    called by the host: the API key stays in the host (like Graflow's
    injected LLM client). See docs/network.md."""

    @staticmethod
    def chat(messages: List[dict], model: str = "", tools: Optional[List[dict]] = None, **params: Any) -> dict:
        """Ask the model. Returns ``{"message", "content", "tool_calls":
        [{"id", "name", "arguments"}], "finish_reason", "model", "usage":
        {"prompt_tokens", "completion_tokens", "total_tokens"}}``; append
        ``message`` to ``messages`` to continue the conversation."""
        req = _llm.ChatRequest(messages=json.dumps(messages), model=model, tools=json.dumps(tools or []),
                               params=json.dumps(params))
        try:
            a = _llm.chat(req)
        except Err as e:
            raise _variant_error(e, LlmError) from None
        return {
            "message": json.loads(a.message),
            "content": a.content,
            "tool_calls": [{"id": t.id, "name": t.name, "arguments": t.arguments} for t in a.tool_calls],
            "finish_reason": a.finish_reason,
            "model": a.model,
            "usage": {"prompt_tokens": a.usage.prompt_tokens, "completion_tokens": a.usage.completion_tokens,
                      "total_tokens": a.usage.total_tokens},
        }


class log:
    """Task logs, collected by the host."""

    @staticmethod
    def debug(message: str) -> None:
        _logging.log(_types.LogLevel.DEBUG, str(message))

    @staticmethod
    def info(message: str) -> None:
        _logging.log(_types.LogLevel.INFO, str(message))

    @staticmethod
    def warn(message: str) -> None:
        _logging.log(_types.LogLevel.WARN, str(message))

    @staticmethod
    def error(message: str) -> None:
        _logging.log(_types.LogLevel.ERROR, str(message))


class WitWorld(wit_world.WitWorld):
    """The component's exports: `tasks`, `run` and `workflow` over the registered tasks."""

    def workflow(self) -> _types.WorkflowDecl:
        # A task is named by its position in what `tasks` returns.
        settings = [
            _types.TaskSettings(task=i, **{k: t.settings[k] for k in _SETTINGS})
            for i, t in enumerate(_REGISTRY.values()) if any(t.settings[k] is not None for k in _SETTINGS)
        ]
        return _types.WorkflowDecl(name=_WORKFLOW.get("name"), flow=_WORKFLOW.get("flow"),
                                   max_steps=_WORKFLOW.get("max_steps"), tasks=settings)

    def tasks(self) -> List[_types.TaskDecl]:
        return [_types.TaskDecl(name=t.name, inputs=list(t.inputs), description=t.description) for t in _REGISTRY.values()]

    def run(self, task: str, input: str) -> str:
        t = _REGISTRY.get(task)
        if t is None:
            raise Err(_types.TaskError_Failed(f"this component has no task '{task}' (it provides: {', '.join(_REGISTRY)})"))
        try:
            output = t.call(json.loads(input))
        except TaskError as e:
            raise Err(_types.TaskError_Failed(str(e)))
        except Retryable as e:
            raise Err(_types.TaskError_Retryable(str(e)))
        except Exception as e:
            raise Err(_types.TaskError_Retryable(_describe(e)))
        try:
            return json.dumps(output, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise Err(_types.TaskError_Failed(f"task '{task}' returned a value that is not JSON: {_describe(e)}"))


def _describe(e: BaseException) -> str:
    """`Type: message (at file:line in function)`: the exception and the last
    frame of its traceback."""
    text = "".join(traceback.format_exception_only(e)).strip()
    frames = traceback.extract_tb(e.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {last.filename}:{last.lineno} in {last.name})"
    return text
