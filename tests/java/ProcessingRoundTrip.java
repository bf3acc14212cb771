// Round-trips frames between a Processing PImage and a running bridge (model "invert"), through
// shared memory and through file paths, using the sketch's Pose2PersonBridge tab unchanged.
// Usage: java -Djava.awt.headless=true -cp core.jar:classes ProcessingRoundTrip PORT ROOT [discover]
// Prints one line per check; exits 0 when every pixel is right.
//
// With a bridge serving the camera tracker's model "puppet": ProcessingRoundTrip PORT ROOT puppet
// sends what the sketch sends after connecting (/mirror 1), then a 640x480 camera frame with
// nobody in it, and prints the /frame/safe notice, its plain words and the M key's model cycle.
import java.io.File;
import java.net.InetSocketAddress;
import processing.core.PImage;

public class ProcessingRoundTrip {
  static final int W = 64, H = 48;

  static int pattern(int x, int y) {
    int r = (x * 4) & 0xff, g = (y * 5) & 0xff, b = (x * 3 + y * 7) & 0xff;
    return 0xff000000 | (r << 16) | (g << 8) | b;
  }

  static int check(PImage got, PImage sent, String what) {
    int bad = 0;
    for (int y = 0; y < H; y++) {
      for (int x = 0; x < W; x++) {
        int s = sent.get(x, y), g = got.get(x, y);
        int want = (s & 0xff000000) | (~s & 0x00ffffff);  // invert: 255 - each colour, alpha kept
        if (g != want) {
          if (bad < 3) System.out.printf("%s MISMATCH at %d,%d: got %08x want %08x%n", what, x, y, g, want);
          bad++;
        }
      }
    }
    return bad;
  }

  static void puppet(int port) throws Exception {
    Pose2PersonBridge bridge = new Pose2PersonBridge("127.0.0.1", port);
    String P = Pose2PersonBridge.P;
    bridge.send(P + "/mirror", 1);
    Pose2PersonBridge.Message mirror = bridge.waitFor(P + "/mirror", 5000);
    System.out.println("MIRROR " + (mirror == null ? "none" : mirror.i(0)));

    // An empty grey room, mirrored as the sketch sends its camera: nobody in front of the camera.
    int w = 640, h = 480;
    PImage camera = new PImage(w, h, PImage.RGB);
    camera.loadPixels();
    for (int k = 0; k < w * h; k++) camera.pixels[k] = 0xff000000 | ((70 + k % w / 16) * 0x010101);
    Pose2PersonBridge.mirror(camera.pixels, w, h);
    camera.updatePixels();
    Pose2PersonBridge.Channel channel = bridge.openShm("processing", w, h, 5000);
    bridge.sendShm(channel, camera.pixels, 21);
    Pose2PersonBridge.Message safe = bridge.waitFor(P + "/frame/safe", 60000);
    Pose2PersonBridge.Message ready = bridge.waitFor(P + "/frame/ready", 10000);
    if (safe != null) {
      System.out.println("SAFE " + safe.i(0) + " " + safe.s(1) + " " + safe.s(2));
      System.out.println("SHOWN " + Pose2PersonBridge.explainSafe(safe.s(2)));
    } else {
      System.out.println("SAFE none");
    }
    System.out.println("READY " + (ready == null ? "none" : ready.i(1)));

    // The M key: the list holds the active model, so pressing M as often as the list is long comes back.
    bridge.send(P + "/model");
    Pose2PersonBridge.Message active = bridge.waitFor(P + "/model/changed", 5000);
    bridge.send(P + "/models");
    Pose2PersonBridge.Message list = bridge.waitFor(P + "/models/list", 5000);
    String[] models = new String[list == null ? 0 : list.args.length];
    for (int k = 0; k < models.length; k++) models[k] = list.s(k);
    String start = active == null ? "?" : active.s(0), m = start;
    StringBuilder cycle = new StringBuilder(start);
    for (int k = 0; k < models.length; k++) {
      m = Pose2PersonBridge.nextModel(models, m);
      cycle.append(" -> ").append(m);
    }
    System.out.println("CYCLE " + cycle);
    bridge.close();
    System.exit(safe != null && ready != null && m.equals(start) ? 0 : 1);
  }

  public static void main(String[] args) throws Exception {
    if (args.length > 2 && args[2].equals("puppet")) puppet(Integer.parseInt(args[0]));
    int port = Integer.parseInt(args[0]);
    File root = new File(args[1]);
    PImage camera = new PImage(W, H, PImage.RGB);
    camera.loadPixels();
    for (int y = 0; y < H; y++) for (int x = 0; x < W; x++) camera.pixels[y * W + x] = pattern(x, y);
    camera.updatePixels();

    Pose2PersonBridge bridge = new Pose2PersonBridge("127.0.0.1", port);
    int failures = 0;
    bridge.send(Pose2PersonBridge.P + "/ping", 11);
    Pose2PersonBridge.Message pong = bridge.waitFor(Pose2PersonBridge.P + "/pong", 5000);
    System.out.println("PONG " + (pong == null ? "none" : pong.i(0)));

    // Shared memory: BGRA8, pixels[] copied in bulk.
    Pose2PersonBridge.Channel channel = bridge.openShm("processing", W, H, 5000);
    System.out.println("SHM FILES " + channel.width + "x" + channel.height);
    bridge.sendShm(channel, camera.pixels, 7);
    Pose2PersonBridge.Message ready = bridge.waitFor(Pose2PersonBridge.P + "/frame/ready", 5000);
    PImage generated = new PImage(W, H, PImage.RGB);
    generated.loadPixels();
    boolean got = ready != null && ready.i(1) == 7 && channel.read(7, generated.pixels);
    generated.updatePixels();
    int bad = got ? check(generated, camera, "SHM") : W * H;
    System.out.println("SHM " + (bad == 0 ? "OK" : "FAIL " + bad) + " latency " + (ready == null ? -1 : ready.f(2)));
    failures += bad == 0 ? 0 : 1;

    // File paths: PNG in, PNG out.
    File in = new File(root, "processing_in.png"), out = new File(root, "processing_out.png");
    bridge.sendPath(camera.pixels, W, H, in, out, 8);
    Pose2PersonBridge.Message done = bridge.waitFor(Pose2PersonBridge.P + "/frame/done", 5000);
    PImage fromFile = new PImage(W, H, PImage.RGB);
    fromFile.loadPixels();
    got = done != null && done.i(0) == 8 && Pose2PersonBridge.readPath(done.s(1), fromFile.pixels, W, H);
    fromFile.updatePixels();
    bad = got ? check(fromFile, camera, "PATH") : W * H;
    System.out.println("PATH " + (bad == 0 ? "OK" : "FAIL " + bad) + " " + (done == null ? "no reply" : done.s(1)));
    failures += bad == 0 ? 0 : 1;

    // Errors arrive as messages too.
    bridge.send(Pose2PersonBridge.P + "/frame/shm", "processing", 999);
    Pose2PersonBridge.Message error = bridge.waitFor(Pose2PersonBridge.P + "/error", 5000);
    System.out.println("ERROR " + (error == null ? "none" : error.i(0) + " " + error.s(1)));

    if (args.length > 2 && args[2].equals("discover")) {
      // Other bridges may be running on this machine: list every one that answers.
      for (InetSocketAddress found : Pose2PersonBridge.discoverAll(2500, false)) {
        System.out.println("DISCOVERED " + found.getAddress().getHostAddress() + " " + found.getPort());
      }
    }
    bridge.close();
    System.exit(failures == 0 ? 0 : 1);
  }
}
