// graflow-host task SDK for JavaScript (componentize-js), over wit/graflow.wit.
//
//   import { task, workflow, channel, control, feedback, log, TaskError, Retryable } from './graflow.js';
//   task(function fetch() { return [1, 2, 3]; }, { maxRetries: 3 });
//   task(function total({ fetch }) { channel.set('n', fetch.length); return fetch.reduce((a, b) => a + b, 0); });
//   workflow({ flow: 'fetch >> total' });
//
// `graflow-host run app.js` builds and runs that file. A task is a function of
// one object (its input). Its declared inputs are the names it destructures
// (`({ fetch })`), or `inputs` given to `task`. `workflow` declares the
// component's own flow and name; the settings given to `task` (maxRetries,
// maxCycles, timeoutMs, memoryMb, fuel) are defaults a workflow file may
// override. Nothing here grants a capability: directories, environment and
// network come only from a workflow file or the command line.
// Returning a value sets the task's result (JSON). Throwing `TaskError` fails
// the task permanently; `Retryable` (or any other exception) is retried while
// the task's max_retries allows.
import * as witChannel from 'graflow:task/channel@0.1.3';
import * as witResults from 'graflow:task/results@0.1.3';
import * as witControl from 'graflow:task/control@0.1.3';
import * as witLogging from 'graflow:task/logging@0.1.3';
import * as witFeedback from 'graflow:task/feedback@0.1.3';
import * as witHttp from 'graflow:task/http@0.1.3';
import * as witLlm from 'graflow:task/llm@0.1.3';

const registry = new Map();
let declared = { flow: undefined, name: undefined, maxSteps: undefined };

/** A permanent failure: never retried. */
export class TaskError extends Error {
  constructor(message) {
    super(message);
    this.name = 'TaskError';
  }
}

/** A transient failure: retried while the task's max_retries allows. */
export class Retryable extends Error {
  constructor(message) {
    super(message);
    this.name = 'Retryable';
  }
}

/** Declared inputs from a destructuring parameter: `function f({ a, b = 1 })`. */
function destructured(fn) {
  const m = /^[^(]*\(\s*\{([^}]*)\}/.exec(fn.toString());
  if (!m) return [];
  return m[1].split(',').map((p) => p.split(/[:=]/)[0].trim()).filter((p) => /^[A-Za-z_$][\w$]*$/.test(p));
}

const SETTINGS = ['maxRetries', 'maxCycles', 'timeoutMs', 'memoryMb', 'fuel'];

function count(what, v) {
  if (v === undefined || v === null) return undefined;
  if (!Number.isInteger(v) || v < 0) throw new Error(`${what} must be a whole number >= 0, not ${v}`);
  return v;
}

/**
 * Register `fn` as a task (named after the function unless `name` is given).
 * `maxRetries`, `maxCycles`, `timeoutMs`, `memoryMb` and `fuel` are the
 * task's defaults; a workflow file's settings win over them.
 */
export function task(fn, { name = fn.name, inputs, description = '', ...settings } = {}) {
  if (!name) throw new Error('a task needs a name: use a named function or pass { name }');
  const unknown = Object.keys(settings).filter((k) => !SETTINGS.includes(k));
  if (unknown.length) throw new Error(`task '${name}': unknown setting(s) ${unknown.join(', ')} (known: ${SETTINGS.join(', ')})`);
  for (const k of SETTINGS) count(`task '${name}': ${k}`, settings[k]);
  registry.set(name, { fn, inputs: inputs ?? destructured(fn), description, settings });
  return fn;
}

/**
 * Declare this component's workflow: `workflow({ flow: 'a >> (b | c)', name, maxSteps })`.
 * `graflow-host run app.js` runs it; a workflow file that names this
 * component may give its own flow and settings, which win.
 */
export function workflow({ flow, name, maxSteps, ...rest } = {}) {
  const unknown = Object.keys(rest);
  if (unknown.length) throw new Error(`workflow: unknown setting(s) ${unknown.join(', ')} (known: flow, name, maxSteps)`);
  for (const [what, value] of [['flow', flow], ['name', name]]) {
    if (value !== undefined && value !== null && typeof value !== 'string') {
      throw new TypeError(`workflow: ${what} must be a string, not ${typeof value} ${String(value)}`);
    }
  }
  declared = { flow: flow ?? undefined, name: name ?? undefined, maxSteps: count('workflow: maxSteps', maxSteps) };
}

function unwrap(call) {
  try {
    return call();
  } catch (e) {
    throw new TaskError(String(e && e.payload !== undefined ? e.payload : e));
  }
}

/** The workflow's shared key-value store; values are JSON. */
export const channel = {
  get: (key, fallback = undefined) => {
    const v = witChannel.get(key);
    return v === undefined ? fallback : JSON.parse(v);
  },
  set: (key, value) => unwrap(() => witChannel.set(key, JSON.stringify(value ?? null))),
  delete: (key) => witChannel.delete(key),
  exists: (key) => witChannel.exists(key),
  keys: () => witChannel.keys(),
  append: (key, value) => unwrap(() => witChannel.append(key, JSON.stringify(value ?? null))),
  prepend: (key, value) => unwrap(() => witChannel.prepend(key, JSON.stringify(value ?? null))),
  atomicAdd: (key, amount = 1) => unwrap(() => witChannel.atomicAdd(key, amount)),
};

/** A request or model call that failed: `kind` is denied, limit, timeout, invalid, provider or failed. */
export class NetError extends Error {
  constructor(kind, message) {
    super(`${kind}: ${message}`);
    this.name = 'NetError';
    this.kind = kind;
    this.detail = message;
  }
}

function netCall(call) {
  try {
    return call();
  } catch (e) {
    const p = e && e.payload;
    if (p && typeof p === 'object' && 'tag' in p) throw new NetError(p.tag, String(p.val));
    throw e;
  }
}

const utf8 = { enc: new TextEncoder(), dec: new TextDecoder() };

/**
 * Outbound HTTP through the host's gate (docs/network.md): only origins the
 * workflow grants this task are reachable; API keys the workflow attaches
 * are added by the host and never visible here.
 *   const r = http.get('https://api.example.com/items'); r.status; r.text(); r.json();
 */
export const http = {
  request: (method, url, { headers = {}, body = '', json, timeoutMs, followRedirects = true } = {}) => {
    const hs = Object.entries(headers).map(([k, v]) => [String(k), String(v)]);
    if (json !== undefined) {
      body = JSON.stringify(json);
      hs.push(['content-type', 'application/json']);
    }
    const bytes = typeof body === 'string' ? utf8.enc.encode(body) : new Uint8Array(body);
    const r = netCall(() =>
      witHttp.send({ method: method.toUpperCase(), url, headers: hs, body: bytes, timeoutMs, followRedirects }),
    );
    const text = () => utf8.dec.decode(r.body);
    return {
      status: r.status,
      ok: r.status >= 200 && r.status < 300,
      headers: r.headers,
      body: r.body,
      text,
      json: () => JSON.parse(text()),
      header: (name) => (r.headers.find(([k]) => k.toLowerCase() === name.toLowerCase()) || [])[1],
    };
  },
  get: (url, opts = {}) => http.request('GET', url, opts),
  post: (url, json, opts = {}) => http.request('POST', url, { ...opts, json }),
};

/**
 * A language model configured by the workflow (`[workflow.llm]`), called by
 * the host: the API key stays in the host.
 *   const a = llm.chat([{ role: 'user', content: 'hi' }]); a.content; a.toolCalls;
 */
export const llm = {
  chat: (messages, { model = '', tools = [], ...params } = {}) => {
    const a = netCall(() =>
      witLlm.chat({
        messages: JSON.stringify(messages),
        model,
        tools: JSON.stringify(tools),
        params: JSON.stringify(params),
      }),
    );
    return {
      message: JSON.parse(a.message),
      content: a.content,
      toolCalls: a.toolCalls.map((t) => ({ id: t.id, name: t.name, arguments: t.arguments })),
      finishReason: a.finishReason,
      model: a.model,
      usage: { promptTokens: a.usage.promptTokens, completionTokens: a.usage.completionTokens, totalTokens: a.usage.totalTokens },
    };
  },
};

/** Task results. */
export const results = {
  set: (value) => unwrap(() => witResults.setResult(JSON.stringify(value ?? null))),
  get: (taskId, fallback = undefined) => {
    const v = witResults.getResult(taskId);
    return v === undefined ? fallback : JSON.parse(v);
  },
};

/** Steering the workflow. */
export const control = {
  nextTask: (name, input = null) => unwrap(() => witControl.nextTask(name, JSON.stringify(input), false)),
  goto: (name, input = null) => unwrap(() => witControl.nextTask(name, JSON.stringify(input), true)),
  nextIteration: (input = null) => unwrap(() => witControl.nextIteration(JSON.stringify(input))),
  canIterate: () => witControl.canIterate(),
  terminateWorkflow: (message = '') => witControl.terminateWorkflow(message),
  cancelWorkflow: (message = '') => witControl.cancelWorkflow(message),
  checkpoint: (metadata = {}) => unwrap(() => witControl.requestCheckpoint(JSON.stringify(metadata))),
  info: () => witControl.info(),
};

const DEFAULT_TIMEOUT = 180;

function ask(kind, prompt, { options = [], metadata = null, timeout = DEFAULT_TIMEOUT } = {}) {
  const req = {
    kind,
    prompt: String(prompt),
    options: options.map(String),
    metadata: JSON.stringify(metadata),
    timeoutSecs: Math.max(0, Math.min(Math.floor(timeout), 4294967295)),
  };
  return JSON.parse(unwrap(() => witFeedback.request(req)));
}

/**
 * Asking a person (human in the loop). Each helper waits up to `timeout`
 * seconds (default 180) for an answer; when nobody answers in time the run
 * pauses durably (the call does not return), and after the answer the run
 * resumes: the task runs again from its start and the same question gets the
 * answer at once. See docs/human-in-the-loop.md.
 */
export const feedback = {
  ask,
  approval: (prompt, opts) => Boolean(ask('approval', prompt, opts).approved),
  text: (prompt, opts) => String(ask('text', prompt, opts).text),
  select: (prompt, options, opts = {}) => String(ask('selection', prompt, { ...opts, options }).selected),
  selectMany: (prompt, options, opts = {}) => ask('multi-selection', prompt, { ...opts, options }).selected,
  custom: (prompt, opts) => ask('custom', prompt, opts).value,
};

/** Task logs, collected by the host. */
export const log = {
  debug: (m) => witLogging.log('debug', String(m)),
  info: (m) => witLogging.log('info', String(m)),
  warn: (m) => witLogging.log('warn', String(m)),
  error: (m) => witLogging.log('error', String(m)),
};

/** Export `tasks`: the registered tasks. */
export function tasks() {
  return [...registry].map(([name, t]) => ({ name, inputs: t.inputs, description: t.description }));
}

const big = (v) => (v === undefined ? undefined : BigInt(v));

/** Export `workflow`: the declared flow and each task's settings. */
export function workflow_() {
  return {
    name: declared.name === undefined ? undefined : String(declared.name),
    flow: declared.flow === undefined ? undefined : String(declared.flow),
    maxSteps: big(declared.maxSteps),
    // A task is named by its position in what `tasks` returns.
    tasks: [...registry.values()]
      .map((t, index) => [index, t])
      .filter(([, t]) => SETTINGS.some((k) => t.settings[k] !== undefined))
      .map(([index, t]) => ({
        task: index,
        maxRetries: t.settings.maxRetries,
        maxCycles: t.settings.maxCycles,
        timeoutMs: big(t.settings.timeoutMs),
        memoryMb: big(t.settings.memoryMb),
        fuel: big(t.settings.fuel),
      })),
  };
}

/** Export `run`: decode the input, call the task, encode its result. */
export function run(name, input) {
  const t = registry.get(name);
  if (!t) throw { tag: 'failed', val: `this component has no task '${name}' (it provides: ${[...registry.keys()].join(', ')})` };
  let out;
  try {
    out = t.fn(JSON.parse(input));
  } catch (e) {
    throw { tag: e instanceof TaskError ? 'failed' : 'retryable', val: describe(e) };
  }
  try {
    return JSON.stringify(out === undefined ? null : out);
  } catch (e) {
    throw { tag: 'failed', val: `task '${name}' returned a value that is not JSON: ${describe(e)}` };
  }
}

/** `Name: message (at file:line:column)`: the error and its innermost frame. */
function describe(e) {
  if (!(e instanceof Error)) return String(e);
  let text = `${e.name}: ${e.message}`;
  const frame = String(e.stack || '').split('\n').map((l) => l.trim()).find((l) => l.startsWith('at ') || /@.+:\d+/.test(l));
  if (frame) text += ` (${frame.startsWith('at ') ? frame : 'at ' + frame})`;
  return text;
}
