#!/usr/bin/env node
// Print a facetrack stream: node subscribe.mjs [ENDPOINT] [--count N] [--timeout SECONDS] [--json]
// --json prints one JSON line per frame (first face: blendshapes, rotation, first landmark),
// which the Python test compares with what it published.

import { subscribe } from "./facetrack.mjs";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 ? args.splice(at, 2)[1] : fallback;
};
const json = args.includes("--json") && args.splice(args.indexOf("--json"), 1);
const count = Number(option("--count", "0"));
const timeout = Number(option("--timeout", "0"));
const endpoint = args[0] ?? "tcp://127.0.0.1:5557";

const stats = { malformed: 0 };
let frames = 0;
let timer;
const arm = () => {
  if (!timeout) return;
  clearTimeout(timer);
  timer = setTimeout(() => {
    console.error(`no message for ${timeout} s from ${endpoint}; ${frames} frames received`);
    process.exit(frames ? 0 : 1);
  }, timeout * 1000);
};
arm();
for await (const { topic, message } of subscribe(endpoint, { stats })) {
  arm();
  if (message.schema === "facetrack.meta/1") {
    if (json) console.log(JSON.stringify({ topic, meta: message.stream_id, blendshape_names: message.blendshape_names.length }));
    continue;
  }
  const face = message.faces[0];
  if (json) {
    console.log(JSON.stringify({
      topic,
      frame_index: message.frame_index,
      stream_id: message.stream_id,
      publish_time: message.publish_time,
      received_time: Date.now() / 1000,
      faces: message.faces.length,
      blendshapes: face && face.blendshapes ? Array.from(face.blendshapes.values) : null,
      rotation: face ? face.pose.rotation : null,
      landmark0: face ? Array.from(face.landmarks.values.slice(0, 3)) : null,
      landmarks_shape: face ? face.landmarks.shape : null,
    }));
  } else {
    const faces = message.faces.map((f) => `#${f.track_id} yaw ${f.pose.yaw.toFixed(1)}`).join(", ");
    console.log(`${message.stream_id} frame ${message.frame_index} [${faces}]`);
  }
  frames++;
  if (count && frames >= count) break;
}
clearTimeout(timer);
console.error(`${frames} frames received, ${stats.malformed} malformed skipped`);
process.exit(0);
