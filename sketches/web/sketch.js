// pose2person p5.js sketch: the webcam goes to the bridge over a WebSocket, the generated
// frames come back and are drawn beside it, with fps and latency. The camera is shown and sent
// mirrored, like a mirror; the bridge is told (/pose2person/mirror 1), so the figure lines up
// with the picture and the person's right arm moves the figure's right arm.
//
// Open it from the bridge (http://127.0.0.1:9401/web/), not from a file: cameras need a
// secure context (localhost counts) and the WebSocket is on the same port.
// Keys: M = next model, P = pose view (this page gets the pose image the generator gets instead of
// the person), SPACE = pause sending. The menu and the button do the same. Safe pictures
// ("nobody in front of the camera") and errors are written on the picture in plain words.

const W = 320; // the frames sent to the bridge (the camera is scaled to this)
const H = 240;
const STALL_MS = 1000; // a frame unanswered this long is given up

let cam;
let small; // W x H graphics the camera is drawn into, read back as RGBA
let generated = null; // p5.Image of the newest result
let bridge;
let menu;
let viewButton;
let paused = false;
let nextId = 1;
let inFlight = null; // {id, sentAt, pixels}

// State the page exposes (the headless test reads it; handy in the console too).
window.p2p = {
  open: false, model: "", models: [], sent: 0, received: 0, dropped: 0, errors: [],
  fps: 0, rttMs: 0, bridgeMs: 0, lastPair: null,
  mirror: null, view: "person", // the bridge's replies to /mirror and /view
  safe: [], // the last /frame/safe notices: {id, policy, reason}
  note: "", // what the page writes on the generated picture ("nobody in front of the camera")
  safeId: -1,
};

function setup() {
  pixelDensity(1);
  createCanvas(2 * W, H + 56);
  cam = createCapture(VIDEO, { flipped: true }); // mirrored, as drawn and as sent
  cam.size(W, H);
  cam.hide();
  small = createGraphics(W, H);
  small.pixelDensity(1);

  menu = createSelect(); // placed below the canvas
  menu.changed(() => bridge.send("/pose2person/model", ["s", menu.value()]));
  viewButton = createButton("pose view");
  viewButton.mousePressed(toggleView);

  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  bridge = new P2P.Bridge(url, {
    onOpen: () => {
      p2p.open = true;
      bridge.send("/pose2person/mirror", ["i", 1]); // the pictures it sends are mirrored
      bridge.send("/pose2person/view", ["s", p2p.view]);
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
  if (p2p.note) { // on the picture itself, so the person in front of the camera reads it
    noStroke(); fill(0, 170); rect(W, H - 34, W, 34);
    fill(255); textSize(16); textAlign(LEFT, CENTER); text(p2p.note, W + 10, H - 17);
  }

  const now = performance.now();
  if (inFlight && now - inFlight.sentAt > STALL_MS) inFlight = null;
  if (!paused && !inFlight && bridge.open && cam.elt.readyState >= 2) sendFrame(now);

  fill(230); noStroke(); textSize(13); textAlign(LEFT, TOP);
  const state = p2p.open ? "connected" : "connecting...";
  const view = p2p.view === "pose" ? " (pose view)" : "";
  text(`${state}   model ${p2p.model || "?"}${view}   ${p2p.fps.toFixed(1)} fps   ` +
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
  if (frame.frameId !== p2p.safeId) p2p.note = ""; // a real picture again
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
    case "/pose2person/model/changed": // the active model (reply to /model without argument)
    case "/pose2person/model/ready": // a switch is done
      p2p.model = a[0];
      if (p2p.models.includes(a[0])) menu.selected(a[0]);
      if (m.address === "/pose2person/model/ready") bridge.send("/pose2person/models"); // what can run may change
      break;
    case "/pose2person/mirror":
      p2p.mirror = a[0];
      break;
    case "/pose2person/view":
      p2p.view = a[0];
      viewButton.html(a[0] === "pose" ? "person view" : "pose view");
      break;
    case "/pose2person/frame/safe": // just before the frame's result: a safe picture, not the model's
      p2p.safe.push({ id: a[0], policy: a[1], reason: a[2] });
      if (p2p.safe.length > 20) p2p.safe.shift();
      p2p.safeId = a[0];
      p2p.note = P2P.explainSafe(a[2]);
      break;
    case "/pose2person/frame/dropped":
      p2p.dropped++;
      break;
    case "/pose2person/status/reply":
      p2p.status = { fps: a[0], meanMs: a[1], p95Ms: a[2], received: a[3], processed: a[4], dropped: a[5] };
      break;
    case "/pose2person/error":
      p2p.errors.push(P2P.explain(a[1], a[2]));
      if (p2p.errors.length > 20) p2p.errors.shift();
      if (inFlight && a[0] === inFlight.id) inFlight = null;
      break;
  }
}

function keyPressed() {
  if (key === "m" || key === "M") {
    if (p2p.models.length) bridge.send("/pose2person/model", ["s", P2P.nextModel(p2p.models, p2p.model)]);
  } else if (key === "p" || key === "P") {
    toggleView();
  } else if (key === " ") {
    paused = !paused;
  }
}

// Pose view for this page only: the bridge keeps its model and sends this client the pose image.
function toggleView() {
  bridge.send("/pose2person/view", ["s", p2p.view === "pose" ? "person" : "pose"]);
}
