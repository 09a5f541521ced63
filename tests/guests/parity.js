// The parity tasks in JavaScript; parity/src/lib.rs and parity.py implement the same ones.
import { task, channel, results, control, Retryable, tasks, run } from './graflow.js';

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

export { tasks, run };
