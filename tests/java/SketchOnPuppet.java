// Drives the compiled sketch itself (Pose2Person.pde, wrapped as Processing wraps it) against a
// running bridge serving "puppet": connect() as the sketch does it (/mirror 1, /view, /models,
// shared memory), one camera frame with nobody in it through sendFrame(), and handleReplies()
// until it is answered; then the P key (pose view) there and back. No window: draw() is not run.
// Usage: java -Djava.awt.headless=true -cp core.jar:classes SketchOnPuppet PORT
import processing.core.PImage;

public class SketchOnPuppet {
  static void pump(Pose2Person sketch, long ms, java.util.function.BooleanSupplier done) throws InterruptedException {
    long deadline = System.currentTimeMillis() + ms;
    while (!done.getAsBoolean() && System.currentTimeMillis() < deadline) {
      sketch.handleReplies();
      Thread.sleep(5);
    }
  }

  public static void main(String[] args) throws Exception {
    final Pose2Person sketch = new Pose2Person();
    sketch.BRIDGE_HOST = "127.0.0.1";
    sketch.BRIDGE_PORT = Integer.parseInt(args[0]);
    sketch.camFrame = new PImage(sketch.W, sketch.H, PImage.RGB);
    sketch.generated = new PImage(sketch.W, sketch.H, PImage.RGB);
    sketch.camFrame.loadPixels();
    java.util.Arrays.fill(sketch.camFrame.pixels, 0xff464646);  // an empty grey room
    sketch.camFrame.updatePixels();
    sketch.connect();
    System.out.println("CONNECTED " + (sketch.channel != null) + " " + sketch.note);
    sketch.sendFrame();
    final int sent = sketch.inFlight;
    pump(sketch, 60000, () -> sketch.inFlight < 0);
    System.out.println("ANSWERED " + (sketch.inFlight < 0) + " safe id " + sketch.safeId + " sent " + sent);
    System.out.println("SAFE NOTE " + sketch.safeNote);
    System.out.println("ERROR NOTE " + sketch.note);

    sketch.key = 'p';
    sketch.keyPressed();
    pump(sketch, 5000, () -> sketch.view.equals("pose"));
    System.out.println("VIEW " + sketch.view + " " + sketch.poseView);
    sketch.keyPressed();
    pump(sketch, 5000, () -> sketch.view.equals("person"));
    System.out.println("VIEW " + sketch.view + " " + sketch.poseView);
    pump(sketch, 2000, () -> sketch.models.length > 0 && !sketch.model.equals("?"));
    System.out.println("MODEL " + sketch.model + " NEXT " + Pose2PersonBridge.nextModel(sketch.models, sketch.model)
                       + " LIST " + String.join(",", sketch.models));
    sketch.bridge.close();
    System.exit(0);
  }
}
