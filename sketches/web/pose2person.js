// pose2person.js: talk to the bridge over its WebSocket (ws://<host>:<http port>/ws).
//
// One binary WebSocket message is one OSC 1.0 packet, or one frame: a 32-byte header
// (docs/PROTOCOL.md, "WebSocket") followed by raw pixels. This file is the browser's twin
// of bridge/transports/wsframe.py and a minimal OSC codec for the four portable types i f s b.
// No dependencies; works without p5.js too.
"use strict";

const P2P = (() => {
  const MAGIC = [0x50, 0x32, 0x50, 0x46]; // "P2PF"
  const HEADER_BYTES = 32;
  const KIND_INPUT = 1;
  const KIND_RESULT = 2;
  const FORMATS = { BGRA8: 1, RGBA8: 2, RGB8: 3, BGR8: 4, RGBAF32: 5 };

  // ---- OSC ------------------------------------------------------------------------------
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const pad4 = (n) => (n + 3) & ~3;

  function oscString(s) {
    const bytes = enc.encode(s);
    const out = new Uint8Array(pad4(bytes.length + 1));
    out.set(bytes);
    return out;
  }

  // encodeOsc("/pose2person/model", ["s", "invert"], ["i", 3]) -> ArrayBuffer
  function encodeOsc(address, ...args) {
    const parts = [oscString(address), oscString("," + args.map((a) => a[0]).join(""))];
    for (const [type, value] of args) {
      if (type === "i" || type === "f") {
        const b = new Uint8Array(4);
        const v = new DataView(b.buffer);
        if (type === "i") v.setInt32(0, value, false); else v.setFloat32(0, value, false);
        parts.push(b);
      } else if (type === "s") {
        parts.push(oscString(String(value)));
      } else if (type === "b") {
        const data = new Uint8Array(value);
        const b = new Uint8Array(4 + pad4(data.length));
        new DataView(b.buffer).setInt32(0, data.length, false);
        b.set(data, 4);
        parts.push(b);
      } else {
        throw new Error("unsupported OSC type " + type);
      }
    }
    const total = parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(total);
    let pos = 0;
    for (const p of parts) { out.set(p, pos); pos += p.length; }
    return out.buffer;
  }

  function readString(bytes, pos) {
    let end = pos;
    while (end < bytes.length && bytes[end] !== 0) end++;
    return [dec.decode(bytes.subarray(pos, end)), pad4(end + 1)];
  }

  // decodeOsc(ArrayBuffer) -> [{address, args}] (bundles flattened, timetags ignored)
  function decodeOsc(buffer, out = []) {
    const bytes = new Uint8Array(buffer);
    const view = new DataView(buffer);
    if (bytes.length >= 8 && dec.decode(bytes.subarray(0, 7)) === "#bundle") {
      let pos = 16;
      while (pos + 4 <= bytes.length) {
        const size = view.getInt32(pos, false);
        decodeOsc(buffer.slice(pos + 4, pos + 4 + size), out);
        pos += 4 + size;
      }
      return out;
    }
    let [address, pos] = readString(bytes, 0);
    let tags;
    [tags, pos] = readString(bytes, pos);
    const args = [];
    for (const t of tags.slice(1)) {
      if (t === "i") { args.push(view.getInt32(pos, false)); pos += 4; }
      else if (t === "f") { args.push(view.getFloat32(pos, false)); pos += 4; }
      else if (t === "s") { let s; [s, pos] = readString(bytes, pos); args.push(s); }
      else if (t === "b") {
        const n = view.getInt32(pos, false);
        args.push(bytes.slice(pos + 4, pos + 4 + n));
        pos += 4 + pad4(n);
      } else break; // the bridge sends only i f s b
    }
    out.push({ address, args });
    return out;
  }

  // ---- frames ---------------------------------------------------------------------------
  function isFrame(buffer) {
    if (buffer.byteLength < 4) return false;
    const b = new Uint8Array(buffer, 0, 4);
    return b[0] === MAGIC[0] && b[1] === MAGIC[1] && b[2] === MAGIC[2] && b[3] === MAGIC[3];
  }

  // A frame message with an RGBA8 payload copied from `rgba` (Uint8Array/Uint8ClampedArray).
  function packFrame(frameId, width, height, rgba, format = "RGBA8", origin = 0) {
    const buffer = new ArrayBuffer(HEADER_BYTES + rgba.length);
    const v = new DataView(buffer);
    MAGIC.forEach((m, i) => v.setUint8(i, m));
    v.setUint8(4, 1); // version
    v.setUint8(5, KIND_INPUT);
    v.setUint8(6, FORMATS[format]);
    v.setUint8(7, origin);
    v.setInt32(8, frameId, true);
    v.setUint32(12, width, true);
    v.setUint32(16, height, true);
    v.setUint32(20, rgba.length, true);
    v.setFloat32(24, 0, true);
    new Uint8Array(buffer, HEADER_BYTES).set(rgba);
    return buffer;
  }

  function parseFrame(buffer) {
    const v = new DataView(buffer);
    const size = v.getUint32(20, true);
    return {
      kind: v.getUint8(5), format: v.getUint8(6), origin: v.getUint8(7), frameId: v.getInt32(8, true),
      width: v.getUint32(12, true), height: v.getUint32(16, true), latencyMs: v.getFloat32(24, true),
      pixels: new Uint8ClampedArray(buffer, HEADER_BYTES, size),
    };
  }

  // ---- connection -----------------------------------------------------------------------
  // new P2P.Bridge(url, {onFrame, onMessage, onOpen, onClose}); .send(address, ...args);
  // .sendFrame(id, w, h, rgba) returns false when the socket is busy (bufferedAmount).
  class Bridge {
    constructor(url, handlers = {}) {
      this.url = url;
      this.handlers = handlers;
      this.ws = null;
      this.maxBuffered = 4 * 1024 * 1024; // bytes; above it a frame is skipped, not queued
      this.connect();
    }

    connect() {
      const ws = new WebSocket(this.url);
      ws.binaryType = "arraybuffer";
      ws.onopen = () => this.handlers.onOpen && this.handlers.onOpen();
      ws.onclose = (e) => {
        this.handlers.onClose && this.handlers.onClose(e);
        setTimeout(() => this.connect(), 1000); // the bridge restarted: try again
      };
      ws.onmessage = (e) => {
        if (!(e.data instanceof ArrayBuffer)) return;
        if (isFrame(e.data)) {
          this.handlers.onFrame && this.handlers.onFrame(parseFrame(e.data));
        } else {
          for (const m of decodeOsc(e.data)) this.handlers.onMessage && this.handlers.onMessage(m);
        }
      };
      this.ws = ws;
    }

    get open() { return this.ws && this.ws.readyState === WebSocket.OPEN; }

    send(address, ...args) {
      if (this.open) this.ws.send(encodeOsc(address, ...args));
    }

    sendFrame(frameId, width, height, rgba) {
      if (!this.open || this.ws.bufferedAmount > this.maxBuffered) return false;
      this.ws.send(packFrame(frameId, width, height, rgba));
      return true;
    }
  }

  // ---- plain words for the screen ---------------------------------------------------------
  // An error code (/pose2person/error i id s code s message) in words an audience understands.
  function explain(code, message) {
    switch (code) {
      case "no_person": return "nobody in front of the camera";
      case "not_a_pose_image": return "this model takes pose images, not camera pictures: press M for another model";
      case "tracker_unavailable": return "the body tracker cannot run on this computer (see docs/TRACKER.md)";
      case "model_unavailable": return "the model is loading, one moment";
      case "model_failed": case "model_stalled": return "the model failed: the bridge is restarting it";
      default: return `${code}: ${message}`;
    }
  }

  // The reason of /pose2person/frame/safe i id s policy s reason ("no_person: ...") in plain words.
  function explainSafe(reason) {
    const colon = reason.indexOf(":");
    return colon < 0 ? explain(reason.trim(), "") : explain(reason.slice(0, colon).trim(), reason.slice(colon + 1).trim());
  }

  // The model after `active` in a /models/list reply, wrapping around. The bridge always lists the
  // active model, so pressing M as often as the list is long comes back to it.
  function nextModel(models, active) {
    if (!models.length) return active;
    return models[(models.indexOf(active) + 1) % models.length];
  }

  return { Bridge, encodeOsc, decodeOsc, packFrame, parseFrame, isFrame, explain, explainSafe, nextModel,
           HEADER_BYTES, FORMATS };
})();

if (typeof module !== "undefined") module.exports = P2P;
