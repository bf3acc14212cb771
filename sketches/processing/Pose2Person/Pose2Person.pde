// Pose2Person: the webcam goes to a pose2person bridge, the generated person comes back and is
// drawn beside it, with fps and latency. Processing 4 (Java mode) + the Video library.
// The camera is shown mirrored, like a mirror, and sent that way; the bridge is told (/mirror 1),
// so the figure lines up with the picture and the person's right arm moves the figure's right arm.
//
// Frames travel through shared memory (the bridge's mapped files; BGRA8 is exactly pixels[]),
// or through PNG files when shared memory is not available. All the OSC, shared-memory and
// discovery code is in the Pose2PersonBridge tab (plain Java, no library to install).
//
// Keys: M = next model, P = pose view (the right picture shows the pose image the generator gets;
//       for this sketch only), T = shared memory <-> file paths, D = look for the bridge again,
//       SPACE = pause. Safe pictures ("nobody in front of the camera") and errors are shown in words.
// Written in strict Java (explicit `public`, `1.0f` floats) so that the tests can compile it.

import processing.video.*;
import java.io.File;
import java.net.InetSocketAddress;

// ---- settings ------------------------------------------------------------------------------
String BRIDGE_HOST = "";          // "" = find a bridge on the network (mDNS); else e.g. "127.0.0.1"
int BRIDGE_PORT = 9400;           // the bridge's OSC port, used with BRIDGE_HOST
boolean USE_SHM = true;           // false = file-path frames (PNG files in the bridge's allowed root)
boolean MIRROR = true;            // show and send the camera mirrored (the bridge is told: /pose2person/mirror 1)
int W = 640;                      // the frame size sent to the bridge
int H = 480;
int STALL_MS = 1000;              // a frame unanswered this long is given up
// ---------------------------------------------------------------------------------------------

Capture cam;
Pose2PersonBridge bridge;
Pose2PersonBridge.Channel channel;
PImage camFrame;
PImage generated;
File pathIn, pathOut;
String[] models = new String[0];
String model = "?";
boolean poseView = false;         // key P: frames come back as the pose image instead of the person
String view = "person";           // what the bridge says it sends back (/pose2person/view reply)
String note = "";                 // the last error, in plain words
String safeNote = "";             // why the newest picture is a safe one ("nobody in front of the camera")
int safeId = -1;
int nextId = 1;
int inFlight = -1;
int sentAt = 0;
boolean paused = false;
float fps = 0, latencyMs = 0, bridgeMs = 0;
int framesThisSecond = 0, secondStart = 0, dropped = 0;

public void settings() {
  size(2 * W, H + 60);
  pixelDensity(1);
}

public void setup() {
  camFrame = createImage(W, H, RGB);
  generated = createImage(W, H, RGB);
  startCamera();
  connect();
}

void startCamera() {
  try {
    String[] cameras = Capture.list();
    if (cameras != null && cameras.length > 0) {
      cam = new Capture(this, W, H);
      cam.start();
      return;
    }
    note = "no camera found: sending a test pattern";
  } catch (Exception e) {
    // Linux without GStreamer plugins (processing-video #155): carry on with the pattern.
    note = "camera unavailable (" + e + "): sending a test pattern";
  }
  cam = null;
}

void connect() {
  String host = BRIDGE_HOST;
  int port = BRIDGE_PORT;
  if (host.length() == 0) {
    InetSocketAddress found = Pose2PersonBridge.discover(2000);
    if (found != null) {
      host = found.getAddress().getHostAddress();
      port = found.getPort();
    } else {
      host = "127.0.0.1";
      note = "no bridge found by mDNS: trying 127.0.0.1:" + port;
    }
  }
  try {
    if (bridge != null) bridge.close();
    bridge = new Pose2PersonBridge(host, port);
    openTransport();
    bridge.send(Pose2PersonBridge.P + "/mirror", MIRROR ? 1 : 0);
    bridge.send(Pose2PersonBridge.P + "/view", poseView ? "pose" : "person");
    bridge.send(Pose2PersonBridge.P + "/models");
    bridge.send(Pose2PersonBridge.P + "/model");
  } catch (Exception e) {
    note = "cannot reach the bridge at " + host + ":" + port + ": " + e.getMessage();
  }
}

void openTransport() {
  channel = null;
  if (USE_SHM) {
    try {
      channel = bridge.openShm("processing", W, H, 3000);
      return;
    } catch (Exception e) {
      // Another machine, or the bridge refused: fall back to files.
      note = "shared memory unavailable (" + e.getMessage() + "): using file paths";
      USE_SHM = false;
    }
  }
  File root = Pose2PersonBridge.defaultRoot();
  root.mkdirs();
  pathIn = new File(root, "processing_in.png");
  pathOut = new File(root, "processing_out.png");
}

public void draw() {
  background(16);
  grabFrame();
  handleReplies();
  if (!paused && bridge != null && (inFlight < 0 || millis() - sentAt > STALL_MS)) sendFrame();
  image(camFrame, 0, 0);
  image(generated, W, 0);
  if (safeNote.length() > 0) {
    // On the picture itself, so the person in front of the camera reads it.
    noStroke();
    fill(0, 170);
    rect(W, H - 44, W, 44);
    fill(255);
    textSize(20);
    text(safeNote, W + 12, H - 15);
  }
  drawStatus();
}

void grabFrame() {
  if (cam != null) {
    if (cam.available()) {
      cam.read();
      camFrame.copy(cam, 0, 0, cam.width, cam.height, 0, 0, W, H);
      if (MIRROR) {
        camFrame.loadPixels();
        Pose2PersonBridge.mirror(camFrame.pixels, W, H);  // shown and sent mirrored, like a mirror
        camFrame.updatePixels();
      }
    }
    return;
  }
  // Test pattern: a moving gradient and a circle, so the generated side visibly follows.
  camFrame.loadPixels();
  int t = frameCount * 3;
  for (int y = 0; y < H; y++) {
    for (int x = 0; x < W; x++) {
      int dx = x - (W / 2 + (int) (W / 4 * sin(t * 0.01f))), dy = y - H / 2;
      int inside = dx * dx + dy * dy < 80 * 80 ? 255 : 0;
      camFrame.pixels[y * W + x] = 0xff000000 | (((x + t) & 0xff) << 16) | ((y & 0xff) << 8) | inside;
    }
  }
  camFrame.updatePixels();
}

void sendFrame() {
  camFrame.loadPixels();
  int id = nextId;
  nextId = nextId % 16777215 + 1;  // below 2^24, like every client (Pd's float32 limit)
  try {
    if (channel != null) {
      if (channel.closed()) openTransport();
      bridge.sendShm(channel, camFrame.pixels, id);
    } else {
      bridge.sendPath(camFrame.pixels, W, H, pathIn, pathOut, id);
    }
    inFlight = id;
    sentAt = millis();
  } catch (Exception e) {
    note = "send failed: " + e.getMessage();
  }
}

void handleReplies() {
  if (bridge == null) return;
  Pose2PersonBridge.Message m;
  while ((m = bridge.poll()) != null) {
    String a = m.address.substring(Pose2PersonBridge.P.length());
    if (a.equals("/frame/safe")) {
      // Arrives just before the frame's reply: the picture is a safe one (the last good picture,
      // or the camera's), not the model's. With nobody in view the reason starts "no_person:".
      safeId = m.i(0);
      safeNote = Pose2PersonBridge.explainSafe(m.s(2));
    } else if (a.equals("/frame/ready") && m.i(1) == inFlight) {
      if (m.i(1) != safeId) safeNote = "";
      generated.loadPixels();
      if (channel != null && channel.read(m.i(1), generated.pixels)) generated.updatePixels();
      frameDone(m.f(2));
    } else if (a.equals("/frame/done") && m.i(0) == inFlight) {
      if (m.i(0) != safeId) safeNote = "";
      generated.loadPixels();
      if (Pose2PersonBridge.readPath(m.s(1), generated.pixels, W, H)) generated.updatePixels();
      frameDone(m.f(4));
    } else if (a.equals("/frame/dropped")) {
      dropped++;
    } else if (a.equals("/models/list")) {
      models = new String[m.args.length];
      for (int k = 0; k < m.args.length; k++) models[k] = m.s(k);
    } else if (a.equals("/model/changed") || a.equals("/model/ready")) {
      model = m.s(0);
      note = "";
      if (a.equals("/model/ready")) bridge.send(Pose2PersonBridge.P + "/models");  // what can run may change
    } else if (a.equals("/view")) {
      view = m.s(0);
    } else if (a.equals("/error")) {
      note = Pose2PersonBridge.explain(m.s(1), m.s(2));
      if (m.i(0) == inFlight) inFlight = -1;
    }
  }
}

void frameDone(float bridgeLatency) {
  latencyMs = millis() - sentAt;
  bridgeMs = bridgeLatency;
  inFlight = -1;
  framesThisSecond++;
  if (millis() - secondStart >= 1000) {
    fps = framesThisSecond * 1000.0f / (millis() - secondStart);
    framesThisSecond = 0;
    secondStart = millis();
  }
}

void drawStatus() {
  fill(230);
  textSize(14);
  String transport = channel != null ? "shared memory" : "file paths";
  text("model " + model + (view.equals("pose") ? " (pose view)" : "") + "   " + nf(fps, 0, 1) + " fps   round trip " + nf(latencyMs, 0, 1) + " ms (bridge "
       + nf(bridgeMs, 0, 1) + " ms)   dropped " + dropped + "   " + transport + (paused ? "   PAUSED" : ""), 10, H + 22);
  fill(255, 140, 140);
  text(note, 10, H + 44);
}

public void keyPressed() {
  if (key == 'm' || key == 'M') {
    // The list holds only models that can run now, the active one included: M comes back to it.
    if (bridge != null && models.length > 0) bridge.send(Pose2PersonBridge.P + "/model", Pose2PersonBridge.nextModel(models, model));
  } else if (key == 'p' || key == 'P') {
    // For this sketch only: the bridge keeps its model; this client's frames come back as the pose image.
    poseView = !poseView;
    if (bridge != null) bridge.send(Pose2PersonBridge.P + "/view", poseView ? "pose" : "person");
  } else if (key == 't' || key == 'T') {
    USE_SHM = !USE_SHM;
    openTransport();
  } else if (key == 'd' || key == 'D') {
    BRIDGE_HOST = "";
    connect();
  } else if (key == ' ') {
    paused = !paused;
  }
}
