// The parity tasks in JavaScript; parity/src/lib.rs and parity.py implement the same ones.
import { task, channel, results, control, feedback, Retryable, tasks, run } from './graflow.js';

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

export { tasks, run };
