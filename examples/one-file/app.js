// A workflow in one file: the tasks and their flow.
//
//   graflow-host run examples/one-file/app.js --input '{"day": "2026-11-27"}'
//
// The first run builds the component (and installs the pinned toolchain into
// the per-user cache); later runs reuse the build until this file changes.
import { task, workflow, channel } from './graflow.js';

task(function fetch({ day }) {
  return [10, 20, 30];
}, { maxRetries: 2 });

task(function double({ fetch }) {
  return fetch.map((v) => v * 2);
});

task(function stats({ fetch }) {
  return { count: fetch.length, sum: fetch.reduce((a, b) => a + b, 0) };
});

task(function store({ double, stats }) {
  channel.set('rows', double.length);
  return { doubled: double, stats };
});

workflow({ flow: 'fetch >> (double | stats) >> store' });
