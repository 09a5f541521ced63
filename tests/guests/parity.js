// The parity tasks in JavaScript; parity/src/lib.rs and parity.py implement the same ones.
import { task, channel, results, control, feedback, http, llm, NetError, Retryable, tasks, run } from './graflow.js';

const LANG = 'javascript';

task(function produce({ seed }) {
  channel.set('seen', seed);
  return { value: seed * 2 };
});

task(function consume({ produce }) {
  return produce.value + channel.get('seen', 0) + results.get('produce', { value: 0 }).value;
});

task(function checkpointer() {
  control.checkpoint({ lang: LANG });
  return LANG;
});

task(function looper({ n = 0 }) {
  if (n < 2) control.nextIteration({ n: n + 1 });
  return { n, cycle: control.info().cycleCount };
});

task(function forever() {
  control.nextIteration({});
  return control.info().cycleCount;
});

task(function flaky() {
  const retry = control.info().retryCount;
  if (retry < 2) throw new Retryable(`try again (${LANG})`);
  return retry + 1;
});

task(function lang() {
  return LANG;
});

task(function crash() {
  return null.field;
});

task(function not_json() {
  return { big: 1n };
});

task(function ask({ kind, timeout = 0 }) {
  const colors = ['red', 'green', 'blue'];
  let answer;
  if (kind === 'approval') answer = feedback.approval('ship it?', { timeout });
  else if (kind === 'text') answer = feedback.text('name?', { timeout });
  else if (kind === 'selection') answer = feedback.select('pick', colors, { timeout });
  else if (kind === 'multi-selection') answer = feedback.selectMany('pick', colors, { timeout });
  else answer = feedback.custom('any JSON?', { timeout });
  return { lang: LANG, answer };
});

task(function net({ base }) {
  const got = http.get(base + '/echo');
  const posted = http.post(base + '/echo', { lang: LANG }).json();
  let denied = 'none';
  try {
    http.get(base.replace('127.0.0.1', 'localhost') + '/echo');
  } catch (e) {
    denied = e instanceof NetError ? e.kind : String(e);
  }
  const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }];
  const messages = [{ role: 'user', content: 'weather in Paris?' }];
  const first = llm.chat(messages, { tools });
  const call = first.toolCalls[0];
  messages.push(first.message, { role: 'tool', tool_call_id: call.id, content: 'sunny' });
  const final = llm.chat(messages, { tools });
  let budget = 'none';
  try {
    for (let i = 0; i < 10; i++) llm.chat([{ role: 'user', content: 'more' }]);
  } catch (e) {
    budget = e instanceof NetError ? e.kind : String(e);
  }
  return { lang: LANG, get: got.status, post: [posted.method, posted.body], denied, tool: call.name, final: final.content, budget };
});

export { tasks, run };
