// Pose2PersonBridge.java: the bridge client for Processing, in plain Java (JDK 17, no libraries).
//
// A .java tab is a normal top-level class: Processing compiles it as it is, and so does plain
// `javac` (tests/test_processing_sketch.py does that against Processing's core.jar). It holds
// everything that is not drawing: a tiny OSC 1.0 codec (i f s b), the UDP socket and its
// receive thread, shared-memory channels (FileChannel.map of the bridge's .in/.out files,
// BGRA8 = Processing's pixels[] read as little-endian ints, with the seqlock of
// docs/PROTOCOL.md), file-path frames (PNG through javax.imageio), and discovery with one plain
// multicast-DNS query (java.net only; no JmDNS to install).
//
// Threading: the receive thread only parses and queues; call poll() from draw() and never touch
// a PImage from another thread (clients.md: oscEvent-style threads must not draw).

import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.net.DatagramPacket;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.MulticastSocket;
import java.net.NetworkInterface;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.IntBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import javax.imageio.ImageIO;

public class Pose2PersonBridge {
  public static final String P = "/pose2person";

  /** One OSC message: address plus Integer, Float, String or byte[] arguments. */
  public static class Message {
    public final String address;
    public final Object[] args;

    public Message(String address, Object... args) {
      this.address = address;
      this.args = args;
    }

    public int i(int k) { return ((Number) args[k]).intValue(); }
    public float f(int k) { return ((Number) args[k]).floatValue(); }
    public String s(int k) { return (String) args[k]; }

    public String toString() {
      StringBuilder b = new StringBuilder(address);
      for (Object a : args) b.append(' ').append(a instanceof byte[] ? "<blob>" : a);
      return b.toString();
    }
  }

  // ---- OSC 1.0 codec -----------------------------------------------------------------------
  static void putString(ByteArrayOutputStream out, String s) {
    byte[] b = s.getBytes(StandardCharsets.UTF_8);
    out.write(b, 0, b.length);
    int pad = 4 - (b.length % 4);
    for (int k = 0; k < pad; k++) out.write(0);
  }

  static void putInt(ByteArrayOutputStream out, int v) {
    out.write(v >>> 24); out.write(v >>> 16); out.write(v >>> 8); out.write(v);
  }

  public static byte[] encode(String address, Object... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    putString(out, address);
    StringBuilder tags = new StringBuilder(",");
    for (Object a : args) {
      if (a instanceof Integer) tags.append('i');
      else if (a instanceof Float) tags.append('f');
      else if (a instanceof String) tags.append('s');
      else if (a instanceof byte[]) tags.append('b');
      else throw new IllegalArgumentException("OSC argument must be Integer, Float, String or byte[]: " + a);
    }
    putString(out, tags.toString());
    for (Object a : args) {
      if (a instanceof Integer) putInt(out, (Integer) a);
      else if (a instanceof Float) putInt(out, Float.floatToIntBits((Float) a));
      else if (a instanceof String) putString(out, (String) a);
      else {
        byte[] b = (byte[]) a;
        putInt(out, b.length);
        out.write(b, 0, b.length);
        for (int k = 0; k < (4 - b.length % 4) % 4; k++) out.write(0);
      }
    }
    return out.toByteArray();
  }

  /** Decode one packet (bundles are flattened). Throws IllegalArgumentException on garbage. */
  public static List<Message> decode(byte[] data, int length) {
    List<Message> out = new ArrayList<Message>();
    decodeInto(ByteBuffer.wrap(data, 0, length).slice().order(ByteOrder.BIG_ENDIAN), out, 0);
    return out;
  }

  static String readString(ByteBuffer b) {
    int start = b.position();
    int end = start;
    while (end < b.limit() && b.get(end) != 0) end++;
    if (end >= b.limit()) throw new IllegalArgumentException("unterminated OSC string");
    byte[] s = new byte[end - start];
    b.get(s);
    b.position(Math.min(b.limit(), (end + 4) & ~3));
    return new String(s, StandardCharsets.UTF_8);
  }

  static void decodeInto(ByteBuffer b, List<Message> out, int depth) {
    if (b.remaining() >= 8 && b.get(b.position()) == '#') {
      if (depth > 8) throw new IllegalArgumentException("bundles nested too deep");
      readString(b);  // "#bundle"
      b.getLong();    // timetag, ignored
      while (b.remaining() >= 4) {
        int size = b.getInt();
        if (size < 0 || size > b.remaining()) throw new IllegalArgumentException("bad bundle element size");
        ByteBuffer element = b.slice();
        element.limit(size);
        decodeInto(element.order(ByteOrder.BIG_ENDIAN), out, depth + 1);
        b.position(b.position() + size);
      }
      return;
    }
    String address = readString(b);
    String tags = b.hasRemaining() ? readString(b) : ",";
    List<Object> args = new ArrayList<Object>();
    for (int k = 1; k < tags.length(); k++) {
      char t = tags.charAt(k);
      if (t == 'i') args.add(b.getInt());
      else if (t == 'f') args.add(b.getFloat());
      else if (t == 's') args.add(readString(b));
      else if (t == 'b') {
        int n = b.getInt();
        byte[] blob = new byte[n];
        b.get(blob);
        b.position(Math.min(b.limit(), b.position() + (4 - n % 4) % 4));
        args.add(blob);
      } else throw new IllegalArgumentException("unsupported OSC type " + t);
    }
    out.add(new Message(address, args.toArray()));
  }

  // ---- plain words for the screen ------------------------------------------------------------
  /** An error code (/pose2person/error i id s code s message) in words an audience understands. */
  public static String explain(String code, String message) {
    if (code.equals("no_person")) return "nobody in front of the camera";
    if (code.equals("not_a_pose_image")) return "this model takes pose images, not camera pictures: press M for another model";
    if (code.equals("tracker_unavailable")) return "the body tracker cannot run on this computer (see docs/TRACKER.md)";
    if (code.equals("model_unavailable")) return "the model is loading, one moment";
    if (code.equals("model_failed") || code.equals("model_stalled")) return "the model failed: the bridge is restarting it";
    if (code.equals("send_failed")) return "cannot send to the bridge: " + message;
    return code + ": " + message;
  }

  /** The reason of /pose2person/frame/safe i id s policy s reason ("no_person: ...") in plain words. */
  public static String explainSafe(String reason) {
    int colon = reason.indexOf(':');
    String code = colon < 0 ? reason.trim() : reason.substring(0, colon).trim();
    String rest = colon < 0 ? "" : reason.substring(colon + 1).trim();
    return explain(code, rest);
  }

  /** The model after `active` in a /models/list reply, wrapping around: pressing M models.length
   *  times comes back to the active model (the bridge always lists it); the first one when the
   *  active model is not listed. */
  public static String nextModel(String[] models, String active) {
    if (models.length == 0) return active;
    int k = 0;
    for (int i = 0; i < models.length; i++) if (models[i].equals(active)) k = i + 1;
    return models[k % models.length];
  }

  /** Mirror a picture left to right in place (width*height ints), as a mirror shows the person. */
  public static void mirror(int[] pixels, int width, int height) {
    for (int y = 0; y < height; y++) {
      for (int a = y * width, b = a + width - 1; a < b; a++, b--) {
        int t = pixels[a];
        pixels[a] = pixels[b];
        pixels[b] = t;
      }
    }
  }

  // ---- connection --------------------------------------------------------------------------
  public final InetSocketAddress bridge;
  final DatagramSocket socket;
  final ConcurrentLinkedQueue<Message> inbox = new ConcurrentLinkedQueue<Message>();
  final Thread receiver;
  volatile boolean running = true;

  public Pose2PersonBridge(String host, int port) throws IOException {
    bridge = new InetSocketAddress(InetAddress.getByName(host), port);
    socket = new DatagramSocket(0);  // replies come back to this socket (the sender's port)
    socket.setReceiveBufferSize(1 << 20);
    receiver = new Thread(this::receiveLoop, "pose2person-osc");
    receiver.setDaemon(true);
    receiver.start();
  }

  void receiveLoop() {
    byte[] buf = new byte[65536];  // the bridge keeps replies far below this; oscP5's 1536 B is not enough
    DatagramPacket packet = new DatagramPacket(buf, buf.length);
    while (running) {
      try {
        packet.setLength(buf.length);
        socket.receive(packet);
        inbox.addAll(decode(buf, packet.getLength()));
      } catch (IllegalArgumentException e) {
        // a packet that is not OSC: ignore it
      } catch (IOException e) {
        if (!running) return;
      }
    }
  }

  public void send(String address, Object... args) {
    byte[] data = encode(address, args);
    try {
      socket.send(new DatagramPacket(data, data.length, bridge));
    } catch (IOException e) {
      inbox.add(new Message(P + "/error", -1, "send_failed", String.valueOf(e.getMessage())));
    }
  }

  /** The next reply, or null. Call from draw(). */
  public Message poll() {
    return inbox.poll();
  }

  /** Wait up to timeoutMs for a reply with this address; other replies stay queued, in order. */
  public Message waitFor(String address, int timeoutMs) {
    long deadline = System.currentTimeMillis() + timeoutMs;
    List<Message> others = new ArrayList<Message>();
    try {
      while (System.currentTimeMillis() < deadline) {
        Message m = inbox.poll();
        if (m == null) {
          try { Thread.sleep(1); } catch (InterruptedException e) { return null; }
          continue;
        }
        if (m.address.equals(address)) return m;
        if (m.address.equals(P + "/error") && !address.equals(P + "/error")) {
          others.add(m);
          if (m.i(0) == -1 && address.startsWith(P + "/shm")) return m;  // a refused shm/open
          continue;
        }
        others.add(m);
      }
      return null;
    } finally {
      // Put back what we skipped, ahead of anything that arrived meanwhile.
      List<Message> rest = new ArrayList<Message>();
      Message m;
      while ((m = inbox.poll()) != null) rest.add(m);
      inbox.addAll(others);
      inbox.addAll(rest);
    }
  }

  public void close() {
    running = false;
    socket.close();
    for (Channel c : channels) c.close();
    channels.clear();
  }

  // ---- shared memory -----------------------------------------------------------------------
  static final int HEADER = 256;
  static final int SLOT_HEADER = 64;
  final List<Channel> channels = new ArrayList<Channel>();

  /** One mapped channel: the client writes `in`, reads `out`. Pixels are BGRA8 ints (0xAARRGGBB). */
  public static class Channel {
    public final String name;
    public final int width, height, slots, slotStride;
    final MappedByteBuffer in, out;
    final RandomAccessFile inFile, outFile;

    Channel(String name, File inPath, File outPath) throws IOException {
      this.name = name;
      inFile = new RandomAccessFile(inPath, "rw");
      outFile = new RandomAccessFile(outPath, "r");
      in = inFile.getChannel().map(FileChannel.MapMode.READ_WRITE, 0, inFile.length());
      out = outFile.getChannel().map(FileChannel.MapMode.READ_ONLY, 0, outFile.length());
      in.order(ByteOrder.LITTLE_ENDIAN);
      out.order(ByteOrder.LITTLE_ENDIAN);
      if (in.getInt(36) != 1) throw new IOException("channel " + name + " is not BGRA8");
      width = in.getInt(16);
      height = in.getInt(20);
      slots = in.getInt(44);
      slotStride = in.getInt(52);
    }

    /** True once the bridge flagged the files closed or superseded: open the channel again. */
    public boolean closed() {
      return (in.getInt(60) & 1) != 0 || (out.getInt(60) & 1) != 0;
    }

    IntBuffer pixels(MappedByteBuffer buf, int slot) {
      ByteBuffer view = buf.duplicate();
      view.position(HEADER + slot * slotStride + SLOT_HEADER);
      view.limit(view.position() + width * height * 4);
      // slice() resets the byte order to big-endian: set it again before asIntBuffer().
      return view.slice().order(ByteOrder.LITTLE_ENDIAN).asIntBuffer();
    }

    /** Write one frame (width*height ints, 0xAARRGGBB as in pixels[]) into the next slot. */
    public void write(int[] argb, int frameId) {
      long count = in.getLong(64);
      int k = (int) (count % slots);
      int off = HEADER + k * slotStride;
      long seq = in.getLong(off);
      seq = (seq % 2 == 0) ? seq + 1 : seq + 2;  // odd: being written (an odd seq means a writer died)
      in.putLong(off, seq);
      in.putLong(off + 8, -1L);
      pixels(in, k).put(argb, 0, width * height);  // one bulk copy: BGRA bytes = little-endian ARGB ints
      in.putLong(off + 8, frameId);
      in.putLong(off + 16, System.currentTimeMillis() * 1000000L);
      in.putLong(off + 24, count + 1);
      in.putLong(off, seq + 1);                    // even again: complete
      in.putLong(64, count + 1);
    }

    /** Copy the result for frameId into dest; false if no intact slot holds it (yet). */
    public boolean read(int frameId, int[] dest) {
      for (int attempt = 0; attempt < 3; attempt++) {
        for (int k = 0; k < slots; k++) {
          int off = HEADER + k * slotStride;
          long seq = out.getLong(off);
          if (seq % 2 != 0 || out.getLong(off + 8) != frameId) continue;
          pixels(out, k).get(dest, 0, width * height);
          if (out.getLong(off) == seq) return true;  // the seqlock re-check: not overwritten meanwhile
        }
      }
      return false;
    }

    void close() {
      // Java cannot unmap (JDK-4724038); the mappings go with the garbage collector.
      try { inFile.close(); } catch (IOException e) { }
      try { outFile.close(); } catch (IOException e) { }
    }
  }

  /** Ask the bridge for a BGRA8 channel and map its files; blocks up to timeoutMs. */
  public Channel openShm(String name, int width, int height, int timeoutMs) throws IOException {
    send(P + "/shm/open", name, width, height, "BGRA8");
    Message m = waitFor(P + "/shm/opened", timeoutMs);
    if (m == null) throw new IOException("no answer to /shm/open from " + bridge + " (is the bridge running?)");
    if (!m.address.equals(P + "/shm/opened")) throw new IOException("bridge refused the channel: " + m);
    // m.s(0) is the channel's handle (name.token): the name this sketch alone can use for the channel.
    Channel c = new Channel(m.s(0), new File(m.s(1)), new File(m.s(2)));
    channels.add(c);
    return c;
  }

  /** Write pixels[] into the channel and tell the bridge; the answer is /pose2person/frame/ready. */
  public void sendShm(Channel c, int[] argb, int frameId) {
    c.write(argb, frameId);
    send(P + "/frame/shm", c.name, frameId);
  }

  // ---- file-path frames --------------------------------------------------------------------
  /** Write pixels[] as a PNG (atomically: temp file, then rename) and send /frame/path; the answer is
   *  /pose2person/frame/done with the output path. Paths must be inside the bridge's --allow-root. */
  public void sendPath(int[] argb, int width, int height, File input, File output, int frameId) throws IOException {
    BufferedImage image = new BufferedImage(width, height, BufferedImage.TYPE_INT_ARGB);
    image.setRGB(0, 0, width, height, argb, 0, width);
    File tmp = new File(input.getParentFile(), "." + input.getName() + ".tmp");
    if (!ImageIO.write(image, "png", tmp)) throw new IOException("no PNG writer");
    Files.move(tmp.toPath(), input.toPath(), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    send(P + "/frame/path", input.getAbsolutePath(), output.getAbsolutePath(), frameId);
  }

  /** Read a result file into dest (0xAARRGGBB); false if it cannot be read or has another size. */
  public static boolean readPath(String path, int[] dest, int width, int height) {
    try {
      BufferedImage image = ImageIO.read(new File(path));
      if (image == null || image.getWidth() != width || image.getHeight() != height) return false;
      image.getRGB(0, 0, width, height, dest, 0, width);
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  /** The default allowed root of the bridge: <system temp>/pose2person. */
  public static File defaultRoot() {
    return new File(System.getProperty("java.io.tmpdir"), "pose2person");
  }

  // ---- discovery: one multicast DNS query (RFC 6762), java.net only -------------------------
  /** Find a bridge advertising _osc._udp on the local network: {host, port}, or null after timeoutMs.
   *  Sent from an ordinary port, the query is a "legacy unicast" one: responders answer straight
   *  to this socket, so nothing needs to bind port 5353 (which another program may hold). */
  public static InetSocketAddress discover(int timeoutMs) {
    List<InetSocketAddress> found = discoverAll(timeoutMs, true);
    return found.isEmpty() ? null : found.get(0);
  }

  /** Every bridge that answers within timeoutMs (or just the first one, with firstOnly). */
  public static List<InetSocketAddress> discoverAll(int timeoutMs, boolean firstOnly) {
    List<InetSocketAddress> results = new ArrayList<InetSocketAddress>();
    byte[] query = mdnsQuery("_osc._udp.local");
    try (MulticastSocket sock = new MulticastSocket(0)) {
      sock.setSoTimeout(100);
      InetSocketAddress group = new InetSocketAddress(InetAddress.getByName("224.0.0.251"), 5353);
      List<NetworkInterface> ifaces = new ArrayList<NetworkInterface>();
      for (NetworkInterface ni : Collections.list(NetworkInterface.getNetworkInterfaces())) {
        if (ni.isUp()) ifaces.add(ni);
      }
      long deadline = System.currentTimeMillis() + timeoutMs;
      long nextSend = 0;
      byte[] buf = new byte[9000];
      while (System.currentTimeMillis() < deadline) {
        if (System.currentTimeMillis() >= nextSend) {
          for (NetworkInterface ni : ifaces) {
            try {
              sock.setNetworkInterface(ni);
              sock.send(new DatagramPacket(query, query.length, group));
            } catch (IOException e) {
              // interface without multicast: skip it
            }
          }
          nextSend = System.currentTimeMillis() + 1000;
        }
        DatagramPacket p = new DatagramPacket(buf, buf.length);
        try {
          sock.receive(p);
        } catch (SocketTimeoutException e) {
          continue;
        }
        InetSocketAddress found = parseMdns(buf, p.getLength(), p.getAddress());
        if (found != null && !results.contains(found)) {
          results.add(found);
          if (firstOnly) return results;
        }
      }
    } catch (IOException e) {
      return results;
    }
    return results;
  }

  static byte[] mdnsQuery(String name) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    int[] header = {0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0};  // id 0, flags 0, one question
    for (int b : header) out.write(b);
    for (String label : name.split("\\.")) {
      byte[] l = label.getBytes(StandardCharsets.US_ASCII);
      out.write(l.length);
      out.write(l, 0, l.length);
    }
    out.write(0);
    out.write(0); out.write(12);  // type PTR
    out.write(0); out.write(1);   // class IN
    return out.toByteArray();
  }

  static int readName(byte[] d, int pos, int len, StringBuilder name) {
    int end = -1;
    for (int jumps = 0; jumps < 32 && pos < len; jumps++) {
      int n = d[pos] & 0xff;
      if (n == 0) { pos++; break; }
      if ((n & 0xc0) == 0xc0) {
        if (end < 0) end = pos + 2;
        pos = ((n & 0x3f) << 8) | (d[pos + 1] & 0xff);
        continue;
      }
      if (name.length() > 0) name.append('.');
      name.append(new String(d, pos + 1, Math.min(n, len - pos - 1), StandardCharsets.UTF_8));
      pos += n + 1;
    }
    return end >= 0 ? end : pos;
  }

  /** The first SRV port (and A address, else the sender) in a response. */
  static InetSocketAddress parseMdns(byte[] d, int len, InetAddress sender) {
    try {
      ByteBuffer b = ByteBuffer.wrap(d, 0, len).order(ByteOrder.BIG_ENDIAN);
      if ((b.getShort(2) & 0x8000) == 0) return null;  // a query, not a response
      int questions = b.getShort(4) & 0xffff;
      int records = (b.getShort(6) & 0xffff) + (b.getShort(8) & 0xffff) + (b.getShort(10) & 0xffff);
      int pos = 12;
      for (int q = 0; q < questions; q++) pos = readName(d, pos, len, new StringBuilder()) + 4;
      int port = -1;
      InetAddress address = null;
      for (int r = 0; r < records && pos + 10 <= len; r++) {
        StringBuilder owner = new StringBuilder();
        pos = readName(d, pos, len, owner);
        int type = b.getShort(pos) & 0xffff;
        int rdlength = b.getShort(pos + 8) & 0xffff;
        int rdata = pos + 10;
        if (type == 33 && port < 0 && owner.toString().contains("_osc._udp")) port = b.getShort(rdata + 4) & 0xffff;
        if (type == 1 && rdlength == 4 && address == null) {
          address = InetAddress.getByAddress(new byte[] {d[rdata], d[rdata + 1], d[rdata + 2], d[rdata + 3]});
        }
        pos = rdata + rdlength;
      }
      if (port < 0) return null;
      return new InetSocketAddress(address != null ? address : sender, port);
    } catch (RuntimeException | IOException e) {
      return null;
    }
  }
}
