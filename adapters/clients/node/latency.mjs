#!/usr/bin/env node
// node latency.mjs ENDPOINT N: receive N frames and print, as one JSON list, the milliseconds
// from each frame's publish_time to its decoded receipt here (used by examples/bench_adapters.py).
import { performance } from "node:perf_hooks";
import { subscribe } from "./facetrack.mjs";

const [endpoint = "tcp://127.0.0.1:5557", count = "100"] = process.argv.slice(2);
const now = () => (performance.timeOrigin + performance.now()) / 1000;
const latencies = [];
const timer = setTimeout(() => { console.log(JSON.stringify(latencies)); process.exit(1); }, 60000);
for await (const { message } of subscribe(endpoint, { topics: ["frame"] })) {
  latencies.push((now() - message.publish_time) * 1000);
  if (latencies.length >= Number(count)) break;
}
clearTimeout(timer);
console.log(JSON.stringify(latencies));
process.exit(0);
