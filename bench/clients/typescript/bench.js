// Sequential cached gets with the TypeScript client (clients/typescript, built to dist/), for
// bench/clients/run: prints the p50 and p99 in microseconds. --knob picks grpc-js channel
// options to try (BENCHMARKS.md).
'use strict';
const { parseArgs } = require('node:util');
const { PsstClient } = require(process.env.PSST_TS_CLIENT || '../../../clients/typescript');

const KNOBS = {
  default: {},
  // channelz bookkeeping off: grpc-js tracks every call for it by default.
  nochannelz: { 'grpc.enable_channelz': 0 },
  // A larger HTTP/2 flow-control window.
  windows: { 'grpc-node.flow_control_window': 1 << 20 },
  noretry: { 'grpc.enable_retries': 0 },
  keepalive: { 'grpc.keepalive_time_ms': 10000, 'grpc.keepalive_timeout_ms': 5000 },
};

async function main() {
  const { values } = parseArgs({
    options: {
      socket: { type: 'string' },
      n: { type: 'string', default: '5000' },
      ref: { type: 'string', default: 'local:bench/db-password' },
      knob: { type: 'string', default: 'default' },
    },
  });
  const channelOptions = KNOBS[values.knob];
  if (!channelOptions) throw new Error(`unknown knob ${values.knob}`);
  const n = Number(values.n);
  const client = new PsstClient({ socket: values.socket, channelOptions });
  const samples = [];
  for (let i = 0; i < Math.floor(n / 10) + n; i++) {
    const started = process.hrtime.bigint();
    await client.get(values.ref);
    if (i >= Math.floor(n / 10)) samples.push(Number(process.hrtime.bigint() - started) / 1000);
  }
  client.close();
  samples.sort((a, b) => a - b);
  console.log(`${samples[Math.floor(samples.length / 2)].toFixed(1)} ${samples[Math.floor((samples.length * 99) / 100)].toFixed(1)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
