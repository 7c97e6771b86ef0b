// facetrack wire protocol for Node.js: decode and validate facetrack.frame/1 and
// facetrack.meta/1 messages, and subscribe to a publisher (see docs/protocol.md).
//
// Arrays travel as the portable map {dtype: "<f4", shape: [...], data: <bin>}; they are
// decoded with explicit little-endian reads, so this works on any host byte order.

import { decode } from "@msgpack/msgpack";
import { Subscriber } from "zeromq";

export const FRAME_SCHEMA = "facetrack.frame/1";
export const META_SCHEMA = "facetrack.meta/1";
export const BLENDSHAPE_COUNT = 52;
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

const READERS = {
  "<f2": [2, (v, o) => halfToFloat(v.getUint16(o, true))],
  "<f4": [4, (v, o) => v.getFloat32(o, true)],
  "<f8": [8, (v, o) => v.getFloat64(o, true)],
  "|i1": [1, (v, o) => v.getInt8(o)],
  "|u1": [1, (v, o) => v.getUint8(o)],
  "<i2": [2, (v, o) => v.getInt16(o, true)],
  "<u2": [2, (v, o) => v.getUint16(o, true)],
  "<i4": [4, (v, o) => v.getInt32(o, true)],
  "<u4": [4, (v, o) => v.getUint32(o, true)],
};

export class ProtocolError extends Error {}

function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

function isArrayMap(value) {
  if (value === null || typeof value !== "object" || Array.isArray(value) || value instanceof Uint8Array) return false;
  const keys = Object.keys(value).sort();
  return keys.length === 3 && keys[0] === "data" && keys[1] === "dtype" && keys[2] === "shape";
}

/** A portable array map as {shape, values: Float64Array} (flat, row-major). */
export function decodeArray(value, where) {
  const reader = READERS[value.dtype];
  if (!reader) throw new ProtocolError(`${where}: unsupported dtype ${JSON.stringify(value.dtype)}`);
  const { shape, data } = value;
  if (!Array.isArray(shape) || shape.length < 1 || shape.length > 4 || !shape.every((n) => Number.isInteger(n) && n >= 0)) {
    throw new ProtocolError(`${where}: bad shape ${JSON.stringify(shape)}`);
  }
  if (!(data instanceof Uint8Array)) throw new ProtocolError(`${where}: data is not binary`);
  const [size, read] = reader;
  const count = shape.reduce((a, b) => a * b, 1);
  if (data.byteLength !== count * size) {
    throw new ProtocolError(`${where}: ${data.byteLength} bytes, shape ${JSON.stringify(shape)} of ${value.dtype} needs ${count * size}`);
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const values = new Float64Array(count);
  for (let i = 0; i < count; i++) values[i] = read(view, i * size);
  return { shape, values };
}

function decodeArrays(value, where, depth = 0) {
  if (depth > 32) throw new ProtocolError(`${where}: nested too deep`);
  if (isArrayMap(value)) return decodeArray(value, where);
  if (Array.isArray(value)) return value.map((v, i) => decodeArrays(v, `${where}[${i}]`, depth + 1));
  if (value !== null && typeof value === "object" && !(value instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, decodeArrays(v, `${where}.${k}`, depth + 1)]));
  }
  return value;
}

function need(cond, message) {
  if (!cond) throw new ProtocolError(message);
}

function validateFace(face, i) {
  const where = `faces[${i}]`;
  need(Number.isInteger(face.track_id), `${where}.track_id is not an integer`);
  need(face.landmarks && face.landmarks.shape.length === 2 && face.landmarks.shape[1] === 3, `${where}.landmarks is not (N, 3)`);
  const rotation = face.pose && face.pose.rotation;
  need(Array.isArray(rotation) && rotation.length === 4, `${where}.pose.rotation is not a quaternion`);
  const norm = Math.hypot(...rotation);
  need(Math.abs(norm - 1) < 1e-3, `${where}.pose.rotation is not unit length (${norm})`);
  if (face.blendshapes !== null && face.blendshapes !== undefined) {
    need(face.blendshapes.shape.length === 1 && face.blendshapes.shape[0] === BLENDSHAPE_COUNT, `${where}.blendshapes is not (52,)`);
  }
}

/** Decode one payload (msgpack, or JSON when it starts with "{") and validate it. */
export function decodeMessage(payload) {
  need(payload.byteLength <= MAX_MESSAGE_BYTES, `message of ${payload.byteLength} bytes is too large`);
  let raw;
  try {
    raw = payload[0] === 0x7b ? JSON.parse(Buffer.from(payload).toString("utf8")) : decode(payload);
  } catch (error) {
    throw new ProtocolError(`undecodable payload: ${error.message}`);
  }
  need(raw !== null && typeof raw === "object" && !Array.isArray(raw), "message is not a map");
  if (raw.schema === META_SCHEMA) {
    need(Array.isArray(raw.blendshape_names), "metadata has no blendshape_names");
    return raw;
  }
  need(raw.schema === FRAME_SCHEMA, `unknown schema ${JSON.stringify(raw.schema)}`);
  const frame = decodeArrays(raw, "frame");
  for (const face of frame.faces ?? []) {
    // JSON payloads carry plain lists: give them the same {shape, values} form.
    for (const key of ["landmarks", "blendshapes"]) {
      if (Array.isArray(face[key])) face[key] = fromNested(face[key]);
    }
  }
  need(Number.isInteger(frame.frame_index), "frame_index is not an integer");
  need(Array.isArray(frame.faces), "faces is not a list");
  frame.faces.forEach(validateFace);
  return frame;
}

function fromNested(list) {
  const shape = [list.length];
  if (list.length && Array.isArray(list[0])) shape.push(list[0].length);
  return { shape, values: Float64Array.from(list.flat()) };
}

/** Yield decoded messages from a publisher; malformed ones are counted in `stats.malformed` and skipped. */
export async function* subscribe(endpoint = "tcp://127.0.0.1:5557", { topics = ["frame", "meta"], stats = { malformed: 0 } } = {}) {
  const socket = new Subscriber({ receiveHighWaterMark: 1000, maxMessageSize: MAX_MESSAGE_BYTES, linger: 0 });
  socket.connect(endpoint);
  for (const topic of topics) socket.subscribe(topic);
  try {
    for await (const parts of socket) {
      if (parts.length !== 2) {
        stats.malformed++;
        continue;
      }
      try {
        yield { topic: parts[0].toString(), message: decodeMessage(parts[1]) };
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        stats.malformed++;
      }
    }
  } finally {
    socket.close();
  }
}
