"""Builds the pose2person component in TouchDesigner and saves it as pose2person.tox.

Run it from the Textport (Alt+T / Dialogs > Textport), with the path of this folder:

    P2P_DIR = '/path/to/pose2person-bridge/sketches/touchdesigner'
    exec(open(P2P_DIR + '/build_pose2person_tox.py').read())

It creates, inside /project1, a Base COMP ``pose2person`` holding:

    videodevin (Video Device In TOP) -> script (Script TOP, callbacks: the "callbacks" DAT) -> out (Null TOP)
                                        callbacks (Text DAT: pose2person_td.py)
    oscin (OSC In DAT, port 9410, registered with the bridge) + oscin_callbacks (Text DAT)
    oscout (OSC Out DAT to the bridge's port 9400: /pose2person/model, /status, ...)
    register (Execute DAT: sends /pose2person/register 9410 at start)
    out1 (Out TOP, so the component has a TOP output)

and saves the component next to this script (``pose2person.tox``). Drag the .tox into any
project afterwards; change the bridge's host and port on the Script TOP's Pose2Person page and
on ``oscout``. ``.tox`` files are binary and only TouchDesigner writes them, which is why the
repo ships this script rather than the file.
"""

from __future__ import annotations

import os

BRIDGE_HOST = "127.0.0.1"
BRIDGE_PORT = 9400
REPLY_PORT = 9410  # where oscin listens; the bridge is told with /pose2person/register

OSCIN_CALLBACKS = '''# Replies from the bridge (status, model changes, errors) arrive here.
def onReceiveOSC(dat, rowIndex, message, bytes, timeStamp, address, args, peer):
    store = parent().fetch('pose2person', {}, storeDefault=True)
    store[address] = list(args)
    if address == '/pose2person/error':
        debug('pose2person error', args)
    return
'''

REGISTER_EXECUTE = f'''# Tell the bridge where replies for the OSC In DAT go (Max-style separate in/out sockets).
def onStart():
    op('oscout').sendOSC('/pose2person/register', [{REPLY_PORT}], useNonStandardTypes=False)
    op('oscout').sendOSC('/pose2person/model', [], useNonStandardTypes=False)
    return

def onCreate():
    onStart()
    return
'''


def build(parent, here: str, td: dict, tox_path: str | None = None):  # type: ignore[no-untyped-def]
    """Create the component under ``parent`` and save it; returns the component.

    ``td`` maps TouchDesigner's operator type names (``baseCOMP``, ``scriptTOP``, ...) to the
    types, which the Textport has as globals.
    """
    old = parent.op("pose2person")
    if old is not None:
        old.destroy()
    comp = parent.create(td["baseCOMP"], "pose2person")

    callbacks = comp.create(td["textDAT"], "callbacks")
    with open(os.path.join(here, "pose2person_td.py"), encoding="utf-8") as fh:
        text = fh.read()
    # The repo root holds the bridge package; the callbacks put it on sys.path.
    repo = os.path.dirname(os.path.dirname(os.path.abspath(here)))
    callbacks.text = text.replace('BRIDGE_PATH_DEFAULT = ""', f"BRIDGE_PATH_DEFAULT = {repo!r}", 1)

    camera = comp.create(td["videodeviceinTOP"], "videodevin")
    script = comp.create(td["scriptTOP"], "script")
    script.par.callbacks = callbacks.name
    null = comp.create(td["nullTOP"], "out")
    out = comp.create(td["outTOP"], "out1")
    camera.outputConnectors[0].connect(script)
    script.outputConnectors[0].connect(null)
    null.outputConnectors[0].connect(out)

    oscin_cb = comp.create(td["textDAT"], "oscin_callbacks")
    oscin_cb.text = OSCIN_CALLBACKS
    oscin = comp.create(td["oscinDAT"], "oscin")
    oscin.par.port = REPLY_PORT
    oscin.par.callbacks = oscin_cb.name
    oscout = comp.create(td["oscoutDAT"], "oscout")
    oscout.par.address = BRIDGE_HOST
    oscout.par.port = BRIDGE_PORT
    register = comp.create(td["executeDAT"], "register")
    register.text = REGISTER_EXECUTE
    register.par.start = True
    register.par.create = True

    for k, node in enumerate((camera, script, null, out)):
        node.nodeX, node.nodeY = k * 200, 0
    for k, node in enumerate((callbacks, oscin_cb, oscin, oscout, register)):
        node.nodeX, node.nodeY = k * 200, -200

    path = tox_path or os.path.join(here, "pose2person.tox")
    comp.save(path)
    print(f"pose2person: built {comp.path}, saved {path}")
    return comp


if __name__ != "pose2person_builder_test":  # the Textport runs it with exec(); tests import it
    _here = globals().get("P2P_DIR") or (os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals()
                                         else os.getcwd())
    build(op("/project1"), _here, globals())  # type: ignore[name-defined]  # noqa: F821 (TD global)
