// pose2person p5.js sketch: the webcam goes to the bridge over a WebSocket, the generated
// frames come back and are drawn beside it, with fps and latency.
//
// Open it from the bridge (http://127.0.0.1:9401/web/), not from a file: cameras need a
// secure context (localhost counts) and the WebSocket is on the same port.
// Keys: M = next model, SPACE = pause sending. The menu switches models too.

const W = 320; // the frames sent to the bridge (the camera is scaled to this)
const H = 240;
const STALL_MS = 1000; // a frame unanswered this long is given up

let cam;
let small; // W x H graphics the camera is drawn into, read back as RGBA
let generated = null; // p5.Image of the newest result
let bridge;
let menu;
let paused = false;
let nextId = 1;
let inFlight = null; // {id, sentAt, pixels}

// State the page exposes (the headless test reads it; handy in the console too).
window.p2p = {
  open: false, model: "", models: [], sent: 0, received: 0, dropped: 0, errors: [],
  fps: 0, rttMs: 0, bridgeMs: 0, lastPair: null,
};

function setup() {
  pixelDensity(1);
  createCanvas(2 * W, H + 56);
  cam = createCapture(VIDEO, { flipped: true });
  cam.size(W, H);
  cam.hide();
  small = createGraphics(W, H);
  small.pixelDensity(1);

  menu = createSelect(); // placed below the canvas
  menu.changed(() => bridge.send("/pose2person/model", ["s", menu.value()]));

  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  bridge = new P2P.Bridge(url, {
    onOpen: () => {
      p2p.open = true;
      bridge.send("/pose2person/models");
      bridge.send("/pose2person/model");
    },
    onClose: () => { p2p.open = false; inFlight = null; },
    onFrame: onResult,
    onMessage: onMessage,
  });
  setInterval(() => bridge.send("/pose2person/status"), 1000);
}

function draw() {
  background(20);
  small.image(cam, 0, 0, W, H);
  image(small, 0, 0);
  if (generated) image(generated, W, 0);
  else { fill(80); noStroke(); rect(W, 0, W, H); }

  const now = performance.now();
  if (inFlight && now - inFlight.sentAt > STALL_MS) inFlight = null;
  if (!paused && !inFlight && bridge.open && cam.elt.readyState >= 2) sendFrame(now);

  fill(230); noStroke(); textSize(13); textAlign(LEFT, TOP);
  const state = p2p.open ? "connected" : "connecting...";
  text(`${state}   model ${p2p.model || "?"}   ${p2p.fps.toFixed(1)} fps   ` +
       `round trip ${p2p.rttMs.toFixed(1)} ms (bridge ${p2p.bridgeMs.toFixed(1)} ms)   ` +
       `dropped ${p2p.dropped}${paused ? "   PAUSED" : ""}`, 8, H + 8);
  const err = p2p.errors[p2p.errors.length - 1];
  if (err) { fill(255, 120, 120); text(err, 8, H + 30); }
}

function sendFrame(now) {
  small.loadPixels();
  const pixels = new Uint8Array(small.pixels); // a copy: what was sent, for the check below
  const id = nextId;
  nextId = (nextId % 16777215) + 1; // stay below 2^24 like every other client
  if (bridge.sendFrame(id, W, H, pixels)) {
    inFlight = { id, sentAt: now, pixels };
    p2p.sent++;
  }
}

let fpsCount = 0;
let fpsSince = performance.now();

function onResult(frame) {
  if (!generated || generated.width !== frame.width || generated.height !== frame.height) {
    generated = createImage(frame.width, frame.height);
  }
  generated.loadPixels();
  generated.pixels.set(frame.pixels);
  generated.updatePixels();
  p2p.received++;
  p2p.bridgeMs = frame.latencyMs;
  const now = performance.now();
  if (inFlight && inFlight.id === frame.frameId) {
    p2p.rttMs = now - inFlight.sentAt;
    p2p.lastPair = { id: frame.frameId, sent: inFlight.pixels, got: new Uint8Array(frame.pixels) };
    inFlight = null;
  }
  fpsCount++;
  if (now - fpsSince >= 1000) {
    p2p.fps = (fpsCount * 1000) / (now - fpsSince);
    fpsCount = 0;
    fpsSince = now;
  }
}

function onMessage(m) {
  const a = m.args;
  switch (m.address) {
    case "/pose2person/models/list":
      p2p.models = a;
      menu.elt.innerHTML = "";
      for (const name of a) menu.option(name);
      if (p2p.model) menu.selected(p2p.model);
      break;
    case "/pose2person/model/ready":
    case "/pose2person/model/changed": // the active model (reply to /model without argument)
    case "/pose2person/model/ready": // a switch is done
      p2p.model = a[0];
      if (p2p.models.includes(a[0])) menu.selected(a[0]);
      break;
    case "/pose2person/frame/dropped":
      p2p.dropped++;
      break;
    case "/pose2person/status/reply":
      p2p.status = { fps: a[0], meanMs: a[1], p95Ms: a[2], received: a[3], processed: a[4], dropped: a[5] };
      break;
    case "/pose2person/error":
      p2p.errors.push(`${a[1]}: ${a[2]}`);
      if (p2p.errors.length > 20) p2p.errors.shift();
      if (inFlight && a[0] === inFlight.id) inFlight = null;
      break;
  }
}

function keyPressed() {
  if (key === "m" || key === "M") {
    if (p2p.models.length) {
      const i = (p2p.models.indexOf(p2p.model) + 1) % p2p.models.length;
      bridge.send("/pose2person/model", ["s", p2p.models[i]]);
    }
  } else if (key === " ") {
    paused = !paused;
  }
}
