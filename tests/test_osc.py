"""bridge.osc: the strict OSC 1.0 codec (i f s b), checked against python-osc and hand-built bytes."""

from __future__ import annotations

import math
import random
import struct

import pytest
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage as PyOscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from bridge.osc import (
    INT32_MAX,
    INT32_MIN,
    MAX_BUNDLE_DEPTH,
    OscDecodeError,
    OscMessage,
    decode_packet,
    encode_bundle,
    encode_message,
)

# ---------------------------------------------------------------------------------------------
# helpers: an independent, hand-written OSC encoder for building (malformed) packets


def pad(raw: bytes) -> bytes:
    """OSC string: bytes, a NUL, then NULs up to a multiple of 4."""
    raw += b"\x00"
    return raw + b"\x00" * (-len(raw) % 4)


def i32(value: int) -> bytes:
    return struct.pack(">i", value)


def f32(value: float) -> bytes:
    return struct.pack(">f", value)


def bundle(*elements: bytes, timetag: int = 1) -> bytes:
    return b"#bundle\x00" + struct.pack(">Q", timetag) + b"".join(i32(len(e)) + e for e in elements)


def pyosc(address: str, *typed: tuple[object, str]) -> bytes:
    builder = OscMessageBuilder(address)
    for value, tag in typed:
        builder.add_arg(value, tag)
    return builder.build().dgram


def malformed(data: bytes, code: str = "malformed_packet") -> OscDecodeError:
    with pytest.raises(OscDecodeError) as info:
        decode_packet(data)
    assert info.value.code == code, (info.value.code, info.value.message)
    assert info.value.message
    return info.value


# ---------------------------------------------------------------------------------------------
# encoding


def test_encoding_matches_hand_computed_bytes() -> None:
    data = encode_message("/pose2person/ping", 7, 1.5, "hi", b"\x01\x02\x03\x04\x05")
    expected = (
        b"/pose2person/ping\x00\x00\x00"  # 17 chars + 3 NULs = 20
        + b",ifsb\x00\x00\x00"
        + b"\x00\x00\x00\x07"
        + b"\x3f\xc0\x00\x00"  # 1.5 as IEEE-754 float32, big-endian
        + b"hi\x00\x00"
        + b"\x00\x00\x00\x05\x01\x02\x03\x04\x05\x00\x00\x00"
    )
    assert data == expected
    assert len(data) % 4 == 0


def test_encoding_without_arguments_has_bare_comma() -> None:
    assert encode_message("/a") == b"/a\x00\x00,\x00\x00\x00"
    assert encode_message("/abc") == b"/abc\x00\x00\x00\x00,\x00\x00\x00"


@pytest.mark.parametrize(
    "args",
    [
        (),
        (0,),
        (INT32_MIN, INT32_MAX, -1, 1),
        (0.0, -0.0, 1.5, -2.25, 2.0**100, 2.0**-100, 123456.0),
        ("",),
        ("a", "ab", "abc", "abcd", "abcde"),
        ("héllo wörld ✓", "日本語"),
        (b"\x00", b"\x00\x01", b"\xff\xfe\xfd", b"abcd", b"abcde"),
        (42, 0.5, "mixed", b"\x00blob\xff", -7, ""),
    ],
)
def test_encoding_equals_python_osc_and_round_trips(args: tuple) -> None:
    tags = {int: "i", float: "f", str: "s", bytes: "b"}
    ours = encode_message("/test/addr", *args)
    theirs = pyosc("/test/addr", *[(a, tags[type(a)]) for a in args])
    assert ours == theirs
    [msg] = decode_packet(ours)
    assert msg.address == "/test/addr"
    assert msg.typetags == "".join(tags[type(a)] for a in args)
    assert msg.args == args  # every float here is exactly representable in float32
    for got, want in zip(msg.args, args):
        assert type(got) is type(want)
    # python-osc reads our bytes back to the same values.
    assert tuple(PyOscMessage(ours).params) == args


def test_empty_blob_round_trips() -> None:
    # python-osc refuses to build an empty blob; the spec allows it: size 0, no data, no padding.
    data = encode_message("/b", b"", 1)
    assert data == b"/b\x00\x00,bi\x00" + i32(0) + i32(1)
    assert decode_packet(data) == [OscMessage("/b", "bi", (b"", 1))]


def test_float_rounds_to_float32() -> None:
    [msg] = decode_packet(encode_message("/f", 0.1, math.inf, -math.inf))
    assert msg.args[0] == struct.unpack(">f", struct.pack(">f", 0.1))[0]
    assert msg.args[0] != 0.1
    assert msg.args[1:] == (math.inf, -math.inf)
    [nan] = decode_packet(encode_message("/f", math.nan))
    assert math.isnan(nan.args[0])


def test_bytearray_and_memoryview_encode_as_blobs() -> None:
    expected = encode_message("/b", b"xyz")
    assert encode_message("/b", bytearray(b"xyz")) == expected
    assert encode_message("/b", memoryview(b"xyz")) == expected


def test_encode_refuses_bool() -> None:
    with pytest.raises(TypeError):
        encode_message("/a", True)
    with pytest.raises(TypeError):
        encode_message("/a", 1, False)


@pytest.mark.parametrize("value", [INT32_MAX + 1, INT32_MIN - 1, 2**63, -(2**40)])
def test_encode_refuses_out_of_range_int(value: int) -> None:
    with pytest.raises(ValueError):
        encode_message("/a", value)


@pytest.mark.parametrize("value", [1e39, -1e300, 3.5e38])
def test_encode_refuses_float_beyond_float32(value: float) -> None:
    # The contract is TypeError/ValueError for anything unencodable (not OverflowError).
    with pytest.raises(ValueError):
        encode_message("/a", value)
    # the largest float32 itself is fine
    [msg] = decode_packet(encode_message("/a", 3.4028234663852886e38))
    assert msg.args == (3.4028234663852886e38,)


def test_encode_refuses_nul_in_strings() -> None:
    with pytest.raises(ValueError):
        encode_message("/a", "bad\x00string")
    with pytest.raises(ValueError):
        encode_message("/a\x00b")


@pytest.mark.parametrize("value", [None, [1], {"a": 1}, 1 + 2j, object()])
def test_encode_refuses_other_types(value: object) -> None:
    with pytest.raises(TypeError):
        encode_message("/a", value)  # type: ignore[arg-type]


def test_encode_refuses_address_without_slash() -> None:
    with pytest.raises(ValueError):
        encode_message("noslash", 1)


def test_encode_bundle_matches_hand_bytes_and_python_osc() -> None:
    m1 = encode_message("/one", 1)
    m2 = encode_message("/two", "x")
    data = encode_bundle([m1, m2])
    assert data == b"#bundle\x00" + b"\x00" * 7 + b"\x01" + i32(len(m1)) + m1 + i32(len(m2)) + m2
    parsed = OscBundle(data)
    assert parsed.timestamp is not None
    assert parsed.num_contents == 2
    contents = list(parsed.content(i) for i in range(parsed.num_contents))
    assert [c.address for c in contents] == ["/one", "/two"]
    assert [c.params for c in contents] == [[1], ["x"]]


# ---------------------------------------------------------------------------------------------
# decoding what python-osc builds


def test_decodes_python_osc_message() -> None:
    data = pyosc("/pose2person/frame/path", (3, "i"), ("/tmp/x.png", "s"), (0.25, "f"), (b"\x09\x08", "b"))
    assert decode_packet(data) == [
        OscMessage("/pose2person/frame/path", "isfb", (3, "/tmp/x.png", 0.25, b"\x09\x08"))
    ]


def test_decodes_python_osc_bundle_flattened_in_order() -> None:
    builder = OscBundleBuilder(IMMEDIATELY)
    builder.add_content(OscMessageBuilder("/a").build())
    m = OscMessageBuilder("/b")
    m.add_arg(5, "i")
    builder.add_content(m.build())
    m = OscMessageBuilder("/c")
    m.add_arg("s", "s")
    builder.add_content(m.build())
    assert decode_packet(builder.build().dgram) == [
        OscMessage("/a", "", ()),
        OscMessage("/b", "i", (5,)),
        OscMessage("/c", "s", ("s",)),
    ]


def test_decodes_python_osc_nested_bundles() -> None:
    def msg(addr: str, n: int):  # type: ignore[no-untyped-def]
        b = OscMessageBuilder(addr)
        b.add_arg(n, "i")
        return b.build()

    inner2 = OscBundleBuilder(IMMEDIATELY)
    inner2.add_content(msg("/deep", 3))
    inner = OscBundleBuilder(IMMEDIATELY)
    inner.add_content(msg("/inner", 2))
    inner.add_content(inner2.build())
    outer = OscBundleBuilder(IMMEDIATELY)
    outer.add_content(msg("/first", 1))
    outer.add_content(inner.build())
    outer.add_content(msg("/last", 4))
    out = decode_packet(outer.build().dgram)
    assert [(m.address, m.args) for m in out] == [
        ("/first", (1,)), ("/inner", (2,)), ("/deep", (3,)), ("/last", (4,)),
    ]


def test_timetag_is_ignored() -> None:
    m = encode_message("/t", 1)
    assert decode_packet(bundle(m, timetag=0xDEADBEEF_00000001)) == decode_packet(m)


def test_empty_bundle_has_no_messages() -> None:
    assert decode_packet(bundle()) == []


def test_message_without_type_tag_string_has_no_args() -> None:
    assert decode_packet(b"/old\x00\x00\x00\x00") == [OscMessage("/old", "", ())]


def test_bundle_nesting_limit() -> None:
    packet = encode_message("/x", 1)
    for _ in range(MAX_BUNDLE_DEPTH):
        packet = bundle(packet)
    assert decode_packet(packet) == [OscMessage("/x", "i", (1,))]
    err = malformed(bundle(packet))
    assert "deep" in err.message


def test_very_deep_nesting_is_refused_not_a_recursion_error() -> None:
    packet = encode_message("/x")
    for _ in range(2000):
        packet = bundle(packet)
    malformed(packet)


# ---------------------------------------------------------------------------------------------
# malformed packets


def test_empty_packet() -> None:
    malformed(b"")


@pytest.mark.parametrize("data", [b"\x00\x00\x00\x00", b"abcd", b"\xff" * 16, b"#bundle", b"#bundlX\x00" + b"\x00" * 8])
def test_not_a_message_nor_a_bundle(data: bytes) -> None:
    malformed(data)


def test_random_bytes() -> None:
    rng = random.Random(7)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        if data[:1] == b"/" or data.startswith(b"#bundle\x00"):
            continue
        malformed(data)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_size_not_multiple_of_four(n: int) -> None:
    good = encode_message("/abc", 1)
    malformed(good + b"\x00" * n)
    malformed(good[:-n])


def test_truncated_int() -> None:
    err = malformed(b"/a\x00\x00,ii\x00" + i32(1))
    assert err.address == "/a"


def test_truncated_float() -> None:
    err = malformed(b"/a\x00\x00,ff\x00" + f32(1.0))
    assert err.address == "/a"


def test_truncated_string() -> None:
    malformed(b"/a\x00\x00,s\x00\x00")  # no string at all
    malformed(b"/a\x00\x00,s\x00\x00abcd")  # no terminating NUL
    malformed(b"/a\x00\x00,ss\x00" + pad(b"one"))  # second string missing


def test_string_cut_before_its_padding() -> None:
    malformed(b"/abc\x00")  # address NUL present, padding missing
    malformed(b"/a\x00\x00,s\x00\x00abcd\x00")


def test_truncated_blob() -> None:
    malformed(b"/a\x00\x00,b\x00\x00")  # size missing
    malformed(b"/a\x00\x00,b\x00\x00" + i32(8) + b"abcd")  # data shorter than size
    malformed(b"/a\x00\x00,b\x00\x00" + i32(5) + b"abcde")  # padding missing
    malformed(b"/a\x00\x00,b\x00\x00" + i32(-4) + b"abcd")  # negative size


def test_non_nul_padding_is_refused() -> None:
    # address padding
    malformed(b"/a\x00X,i\x00\x00" + i32(1))
    # "/abc" then 3 bytes that should be NUL padding: not a message without type tags
    malformed(b"/abc\x00,i\x00")
    # type tag padding
    malformed(b"/a\x00\x00,i\x00Z" + i32(1))
    # string argument padding
    malformed(b"/a\x00\x00,s\x00\x00ab\x00\x01")
    # blob padding
    malformed(b"/a\x00\x00,b\x00\x00" + i32(1) + b"\x05\x07\x08\x09")
    # and the same packets with NUL padding decode
    assert decode_packet(b"/a\x00\x00,s\x00\x00ab\x00\x00") == [OscMessage("/a", "s", ("ab",))]
    assert decode_packet(b"/a\x00\x00,b\x00\x00" + i32(1) + b"\x05\x00\x00\x00") == [OscMessage("/a", "b", (b"\x05",))]


def test_trailing_bytes_after_arguments() -> None:
    malformed(encode_message("/a", 1) + i32(2))


def test_type_tag_string_without_comma() -> None:
    malformed(b"/a\x00\x00i\x00\x00\x00" + i32(1))


def test_address_must_start_with_slash_inside_bundle() -> None:
    malformed(bundle(b"ab\x00\x00,\x00\x00\x00"))


@pytest.mark.parametrize(
    "typed",
    [
        [(5, "h")],
        [(1.5, "d")],
        [(True, "T")],
        [(False, "F")],
        [(None, "N")],
        [(1, "i"), (2**40, "h")],
    ],
)
def test_unsupported_types_from_python_osc(typed: list[tuple[object, str]]) -> None:
    err = malformed(pyosc("/typed", *typed), "unsupported_type")
    assert err.address == "/typed"
    assert "i f s b" in err.message


def test_unsupported_type_inside_bundle() -> None:
    malformed(bundle(encode_message("/ok", 1), pyosc("/bad", (1.0, "d"))), "unsupported_type")


@pytest.mark.parametrize("size", [0, -4, 3, 6, 1000])
def test_bad_bundle_element_size(size: int) -> None:
    m = encode_message("/a", 1)
    malformed(b"#bundle\x00" + struct.pack(">Q", 1) + i32(size) + m)


def test_truncated_bundle() -> None:
    malformed(b"#bundle\x00\x00\x00\x00\x00")  # timetag cut short
    malformed(bundle(encode_message("/a")) + b"\x00\x00")  # element size cut short
    malformed(b"#bundle\x00" + struct.pack(">Q", 1) + i32(12) + encode_message("/a"))  # element past the end


def test_non_utf8() -> None:
    malformed(b"/\xff\xfe\x00,\x00\x00\x00")
    err = malformed(b"/a\x00\x00,s\x00\x00\xc3\x28\x00\x00")
    assert err.address == "/a"


# ---------------------------------------------------------------------------------------------
# fuzz: only messages or OscDecodeError, never anything else


def _random_arg(rng: random.Random) -> object:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randint(INT32_MIN, INT32_MAX)
    if kind == 1:
        return struct.unpack(">f", struct.pack(">f", rng.uniform(-1e6, 1e6)))[0]
    if kind == 2:
        return "".join(rng.choice("abcxyz/é✓ 0") for _ in range(rng.randrange(9)))
    return bytes(rng.randrange(256) for _ in range(rng.randrange(9)))


def _random_valid(rng: random.Random, depth: int = 0) -> bytes:
    if depth < 3 and rng.random() < 0.25:
        return encode_bundle([_random_valid(rng, depth + 1) for _ in range(rng.randrange(4))])
    address = "/" + "".join(rng.choice("abc/") for _ in range(rng.randrange(8)))
    return encode_message(address, *[_random_arg(rng) for _ in range(rng.randrange(5))])


def test_fuzz_only_messages_or_osc_decode_errors() -> None:
    rng = random.Random(20240601)
    outcomes = {"ok": 0, "error": 0}
    for n in range(2400):
        packet = _random_valid(rng)
        mode = n % 6
        if mode == 0:
            data = packet
        elif mode == 1:  # truncated
            data = packet[: rng.randrange(len(packet) + 1)]
        elif mode == 2:  # bit flips
            buf = bytearray(packet)
            for _ in range(rng.randrange(1, 4)):
                i = rng.randrange(len(buf))
                buf[i] ^= 1 << rng.randrange(8)
            data = bytes(buf)
        elif mode == 3:  # random bytes that look like a message
            data = b"/" + bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        elif mode == 4:  # random bytes that look like a bundle
            data = b"#bundle\x00" + bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        else:  # one byte replaced by a random one, possibly a bogus type tag
            buf = bytearray(packet)
            buf[rng.randrange(len(buf))] = rng.randrange(256)
            data = bytes(buf)
        try:
            out = decode_packet(data)
        except OscDecodeError as exc:
            assert exc.code in ("malformed_packet", "unsupported_type")
            assert mode != 0, (data, exc.message)
            outcomes["error"] += 1
            continue
        outcomes["ok"] += 1
        assert isinstance(out, list)
        for msg in out:
            assert isinstance(msg, OscMessage)
            assert msg.address.startswith("/")
            assert len(msg.typetags) == len(msg.args)
            for tag, arg in zip(msg.typetags, msg.args):
                assert type(arg) is {"i": int, "f": float, "s": str, "b": bytes}[tag]
        if mode == 0 and not data.startswith(b"#bundle"):
            assert encode_message(out[0].address, *out[0].args) == data
        # Strictness: a single message that decoded with a type tag string (and no NaN,
        # whose bits may not survive) has exactly one encoding: the one it arrived in.
        if (data[:1] == b"/" and out[0].typetags
                and not any(isinstance(a, float) and math.isnan(a) for a in out[0].args)):
            assert encode_message(out[0].address, *out[0].args) == data
    assert outcomes["ok"] > 300 and outcomes["error"] > 300, outcomes


# ---------------------------------------------------------------------------------------------
# python-osc as the independent reference, on random content


def test_random_messages_agree_with_python_osc_both_ways() -> None:
    rng = random.Random(99)
    tags = {int: "i", float: "f", str: "s", bytes: "b"}
    for _ in range(300):
        args = [_random_arg(rng) for _ in range(rng.randrange(6))]
        args = [a for a in args if a != b""]  # python-osc cannot build an empty blob
        address = "/" + "".join(rng.choice("abcz/_-0") for _ in range(rng.randrange(1, 12)))
        theirs = pyosc(address, *[(a, tags[type(a)]) for a in args])
        assert encode_message(address, *args) == theirs
        [msg] = decode_packet(theirs)
        assert (msg.address, msg.args) == (address, tuple(args))
        parsed = PyOscMessage(theirs)
        assert parsed.address == address and parsed.params == args


def test_python_osc_bundles_at_the_nesting_limit() -> None:
    def nest(levels: int) -> bytes:
        m = OscMessageBuilder("/leaf")
        m.add_arg(levels, "i")
        content = m.build()
        for _ in range(levels):
            b = OscBundleBuilder(IMMEDIATELY)
            b.add_content(content)
            content = b.build()
        return content.dgram

    assert decode_packet(nest(MAX_BUNDLE_DEPTH)) == [OscMessage("/leaf", "i", (MAX_BUNDLE_DEPTH,))]
    malformed(nest(MAX_BUNDLE_DEPTH + 1))


def test_unsupported_type_deep_inside_python_osc_bundles() -> None:
    bad = OscMessageBuilder("/deep/bad")
    bad.add_arg(True, "T")
    inner = OscBundleBuilder(IMMEDIATELY)
    inner.add_content(bad.build())
    outer = OscBundleBuilder(IMMEDIATELY)
    ok = OscMessageBuilder("/ok")
    ok.add_arg(1, "i")
    outer.add_content(ok.build())
    outer.add_content(inner.build())
    err = malformed(outer.build().dgram, "unsupported_type")
    assert err.address == "/deep/bad"


@pytest.mark.parametrize("tag", ["h", "d", "T", "F", "N", "I", "t", "c", "r", "m", "S", "[", "]", "?"])
def test_every_other_type_tag_is_unsupported(tag: str) -> None:
    # Hand-built: the tag alone (no payload) is enough to be refused by type, not by length.
    tagstr = pad(("," + tag).encode())
    err = malformed(b"/x\x00\x00" + tagstr + bytes(8), "unsupported_type")
    assert err.address == "/x"
    assert tag in err.message


def test_unsupported_type_after_valid_arguments() -> None:
    data = b"/x\x00\x00" + pad(b",isd") + i32(5) + pad(b"hi") + struct.pack(">d", 1.5)
    err = malformed(data, "unsupported_type")
    assert err.address == "/x"


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = encode_message("/m", 1, "two")
    want = [OscMessage("/m", "is", (1, "two"))]
    assert decode_packet(bytearray(data)) == want
    assert decode_packet(memoryview(data)) == want


def test_osc_decode_error_is_a_value_error() -> None:
    err = malformed(b"")
    assert isinstance(err, ValueError)
    assert err.address is None
