// The JavaScript step of the mixed example: a human-readable line.
import { task, channel, log, tasks, run } from './graflow.js';

task(
  function format({ ingest }) {
    const unit = channel.get('unit', 'units');
    log.info(`javascript formats ${ingest.length} readings`);
    return `${ingest.length} readings in ${unit}: ${ingest.map((r) => r.toFixed(1)).join(', ')}`;
  },
  { description: 'Formats the readings (JavaScript)' },
);

export { tasks, run };
