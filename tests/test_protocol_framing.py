"""Framing, signing, header and content validation, connection files: the protocol package without sockets."""

from __future__ import annotations

import os
import stat
import sys

import msgpack
import numpy as np
import pytest
from draggan_protocol import framing, spec
from draggan_protocol.connection import (
    ConnectionInfo,
    default_connection_file,
    read_connection_file,
    remove_connection_file,
    write_connection_file,
)
from draggan_protocol.errors import ProtocolError
from draggan_protocol.framing import SignatureError, decode, encode, make_header
from draggan_protocol.signing import Signer
from draggan_protocol.validation import check_image_buffer, validate_request

SIGNER = Signer(b"secret")


def frames_for(msg_type="hello", content=None, buffers=(), version=spec.PROTOCOL_VERSION, signer=SIGNER):
    header = make_header(msg_type, "client-1")
    header["version"] = version
    return encode(header, content or {}, list(buffers), signer)


def test_round_trip_keeps_header_content_and_buffers():
    pixels = os.urandom(4 * 5 * 3)
    frames = frames_for("open_session", {"layer": {"width": 5, "height": 3}}, [pixels])
    assert frames[0] == spec.DELIMITER and len(frames[1]) == 64
    msg = decode(frames, SIGNER)
    assert msg.msg_type == "open_session"
    assert msg.content == {"layer": {"width": 5, "height": 3}}
    assert bytes(msg.buffers[0]) == pixels
    assert msg.header["version"] == spec.PROTOCOL_VERSION and msg.parent is None


@pytest.mark.parametrize("tamper", ["header", "content", "buffer", "signature", "key"])
def test_any_tampering_breaks_the_signature(tamper):
    frames = frames_for("drag", {"x": 1}, [b"\x01\x02\x03\x04"])
    signer = SIGNER
    if tamper == "header":
        frames[2] = frames[2][:-1] + b"x"
    elif tamper == "content":
        frames[3] = msgpack.packb({"x": 2})
    elif tamper == "buffer":
        frames[4] = b"\x01\x02\x03\x05"
    elif tamper == "signature":
        frames[1] = b"0" * 64
    else:
        signer = Signer(b"other")
    with pytest.raises(SignatureError):
        decode(frames, signer)


def test_newer_major_version_is_refused_with_a_specific_code():
    with pytest.raises(ProtocolError) as err:
        decode(frames_for(version="3.0"), SIGNER)
    assert err.value.code == spec.ErrorCode.UNSUPPORTED_VERSION
    assert err.value.details["supported"] == spec.PROTOCOL_VERSION
    assert err.value.parent_id  # the reply can point at the request


def test_newer_minor_version_and_unknown_fields_are_accepted():
    msg = decode(frames_for("hello", {"client": "x", "from_the_future": [1, 2]}, version="2.7"), SIGNER)
    assert validate_request("hello", msg.content) == {"client": "x"}


def _sign_tail(frames: list[bytes]) -> list[bytes]:
    """The same frames with a valid signature in frame 1 (over frames 2…), as a key holder would send them."""
    return [frames[0], SIGNER.sign(frames[2:]), *frames[2:]]


BROKEN_FRAMING = [  # (the five buffers need a readable header: buffer_frames could group frames, 2.0)
    ([spec.DELIMITER, b"s", b"h" * 5000, b"c"], spec.ErrorCode.TOO_LARGE),
    ([spec.DELIMITER, b"s", b"h", b"c" * 300_000], spec.ErrorCode.TOO_LARGE),
    (
        [spec.DELIMITER, b"s", msgpack.packb(make_header("hello", "s")), b"c", b"1", b"2", b"3", b"4", b"5"],
        spec.ErrorCode.TOO_LARGE,
    ),
    ([b"nope", b"s", b"h", b"c"], spec.ErrorCode.BAD_MESSAGE),
]


@pytest.mark.parametrize("frames, code", BROKEN_FRAMING)
def test_broken_framing_is_refused_with_a_code_only_once_the_signature_holds(frames, code):
    # Unsigned: the signature is checked first, so the sender hears nothing (SignatureError = drop, no reply).
    with pytest.raises(SignatureError):
        decode(frames, SIGNER)
    # Signed by a key holder: the specific code, which the daemon sends back.
    with pytest.raises(ProtocolError) as err:
        decode(_sign_tail(frames), SIGNER)
    assert not isinstance(err.value, SignatureError)
    assert err.value.code == code


@pytest.mark.parametrize("frames", [[], [b"a"], [b"a", b"b"], [spec.DELIMITER, b"s", b"h"]])
def test_too_few_frames_cannot_be_verified_and_get_no_reply(frames):
    with pytest.raises(SignatureError):
        decode(frames, SIGNER)


class _CountingSigner(Signer):
    def __init__(self, key: bytes) -> None:
        super().__init__(key)
        self.hashed = 0

    def sign(self, frames):
        frames = list(frames)
        self.hashed += sum(len(f) for f in frames)
        return super().sign(frames)


def test_hashing_an_unsigned_message_is_bounded():
    limits = {"max_frame_bytes": 1 << 20, "max_layer_pixels": 1 << 16}
    max_frames, max_bytes = spec.message_bounds(limits)
    assert max_bytes <= 4096 + 262144 + 5 * (1 << 16)
    signer = _CountingSigner(b"secret")
    big = [spec.DELIMITER, b"0" * 64, b"h", b"c", b"\0" * (1 << 20), b"\0" * (1 << 20)]
    many = [spec.DELIMITER, b"0" * 64, b"h", b"c", *[b"x"] * max_frames]
    short_sig = [spec.DELIMITER, b"0" * (1 << 20), b"h", b"c"]  # a huge "signature" is not even copied
    for frames in (big, many, short_sig):
        with pytest.raises(SignatureError):
            decode(frames, signer, limits)
    assert signer.hashed == 0
    # Within the bound an unsigned message is hashed once, at most max_bytes.
    with pytest.raises(SignatureError):
        decode([spec.DELIMITER, b"0" * 64, b"h", b"c", b"\0" * 1000], signer, limits)
    assert signer.hashed == 1002


def _signed(header_bytes: bytes, content_bytes: bytes = b"\x80") -> list[bytes]:
    return [spec.DELIMITER, SIGNER.sign([header_bytes, content_bytes]), header_bytes, content_bytes]


@pytest.mark.parametrize(
    "header",
    [
        b"\xc1garbage",
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"msg_type": "hello"}),
        msgpack.packb({"msg_id": 5, "msg_type": "hello", "version": "1.0", "session": "s", "date": "d"}),
        msgpack.packb({"msg_id": "a", "msg_type": "hello", "version": "one", "session": "s", "date": "d"}),
        msgpack.packb({"msg_id": "a", "msg_type": "hello", "version": "1.0", "session": "s", "date": "d", "parent": 3}),
    ],
)
def test_bad_headers(header):
    with pytest.raises(ProtocolError) as err:
        decode(_signed(header), SIGNER)
    assert err.value.code == spec.ErrorCode.BAD_HEADER


def test_content_must_be_a_map():
    h = msgpack.packb(make_header("hello", "s"))
    with pytest.raises(ProtocolError) as err:
        decode(_signed(h, msgpack.packb([1])), SIGNER)
    assert err.value.code == spec.ErrorCode.INVALID_CONTENT


@pytest.mark.parametrize(
    "msg_type, content, field",
    [
        ("drag", {"points": [[1, 2, 3, 4]]}, "session_id"),
        ("drag", {"session_id": "s", "points": []}, "points"),
        ("drag", {"session_id": "s", "points": [[1, 2, 3]]}, "points[0]"),
        ("drag", {"session_id": "s", "points": [[1, 2, 3, float("nan")]]}, "points[0]"),
        ("drag", {"session_id": "s", "points": [[1, 2, 3, 4]] * 65}, "points"),
        ("drag", {"session_id": "s", "points": [[1, 2, 3, 4]], "params": {"steps": 0}}, "params.steps"),
        ("drag", {"session_id": "s", "points": [[1, 2, 3, 4]], "params": {"steps": True}}, "params.steps"),
        ("drag", {"session_id": "s", "points": [[1, 2, 3, 4]], "params": {"lr": "fast"}}, "params.lr"),
        ("drag", {"session_id": 7, "points": [[1, 2, 3, 4]]}, "session_id"),
        ("open_session", {"layer": {"width": 0, "height": 4}}, "layer.width"),
        ("open_session", {"layer": {"width": 4, "height": 99999}}, "layer.height"),
        ("open_session", {"layer": {"width": 4, "height": 4, "format": "CMYK8"}}, "layer.format"),
        ("open_session", {"source": "dream"}, "source"),
        ("open_session", {"region": [0, 0, 0, 5]}, "region"),
        ("open_session", {"seed": -1, "source": "seed"}, "seed"),
        ("get_result", {"session_id": "s", "area": "everything"}, "area"),
        ("cancel", {}, "job_id"),
    ],
)
def test_content_validation_names_the_field(msg_type, content, field):
    with pytest.raises(ProtocolError) as err:
        validate_request(msg_type, content)
    assert err.value.code == spec.ErrorCode.INVALID_CONTENT
    assert err.value.field == field


def test_unknown_type_and_defaults():
    with pytest.raises(ProtocolError) as err:
        validate_request("format_disk", {})
    assert err.value.code == spec.ErrorCode.UNKNOWN_MESSAGE_TYPE
    c = validate_request("drag", {"session_id": "s", "points": [[1, 2, 3, 4]]})
    assert c["params"] == {"steps": 200} and c["preview_every"] == 5 and c["points"] == [[1.0, 2.0, 3.0, 4.0]]


def test_buffer_size_checks():
    desc = validate_request("open_session", {"layer": {"width": 3, "height": 2}})["layer"]
    assert check_image_buffer(desc, [b"\0" * 24], 3, 2, "layer") == b"\0" * 24
    for buffers in ([], [b"\0" * 23]):
        with pytest.raises(ProtocolError) as err:
            check_image_buffer(desc, buffers, 3, 2, "layer")
        assert err.value.code == spec.ErrorCode.BAD_BUFFER


def test_connection_file_round_trip_is_private(tmp_path):
    path = tmp_path / "sub" / "daemon.json"
    info = ConnectionInfo(endpoint="tcp://127.0.0.1:5", key="ab" * 32, pid=os.getpid(), extra={"device": "cpu"})
    write_connection_file(info, path)
    if sys.platform != "win32":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = read_connection_file(path)
    assert back.endpoint == info.endpoint and back.key_bytes == info.key.encode() and back.extra["device"] == "cpu"
    remove_connection_file(path, pid=os.getpid() + 1)  # not ours: kept
    assert path.exists()
    remove_connection_file(path, pid=os.getpid())
    assert not path.exists()
    with pytest.raises(FileNotFoundError):
        read_connection_file(path)


def test_default_connection_file_location(tmp_path, monkeypatch):
    monkeypatch.setenv("DRAGGAN_CONNECTION_FILE", str(tmp_path / "x.json"))
    assert default_connection_file() == tmp_path / "x.json"
    monkeypatch.delenv("DRAGGAN_CONNECTION_FILE")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
        assert default_connection_file() == tmp_path / "draggan" / "daemon.json"
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        assert default_connection_file() == tmp_path / "state" / "draggan" / "daemon.json"


def test_protocol_package_does_not_import_numpy_or_torch():
    import subprocess

    code = (
        "import sys, draggan_protocol, draggan_protocol.client, draggan_protocol.validation;"
        "bad = [m for m in ('numpy', 'torch') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_connection_file_never_changes_the_mode_of_an_existing_folder(tmp_path):
    from draggan_protocol.connection import ConnectionInfo, write_connection_file

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    p = write_connection_file(ConnectionInfo("tcp://127.0.0.1:1", "k" * 64), shared / "daemon.json")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    fresh = write_connection_file(ConnectionInfo("tcp://127.0.0.1:1", "k" * 64), tmp_path / "a" / "b" / "d.json")
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


# ------------------------------------------------------------------ buffers in several frames (2.0)
def test_a_buffer_larger_than_a_frame_travels_in_frames_and_comes_back_whole():
    big = np.random.default_rng(0).integers(0, 256, size=10 * 2**20 + 5, dtype=np.uint8)
    small = b"\x01\x02\x03"
    frames = framing.encode(framing.make_header("x", "s"), {}, [big, small], SIGNER, max_frame_bytes=4 * 2**20)
    body = frames[4:]
    assert [len(f) for f in body] == [4 * 2**20, 4 * 2**20, 2 * 2**20 + 5, 3]  # zero-copy views of `big`
    assert msgpack.unpackb(frames[2])["buffer_frames"] == [3, 1]
    msg = decode([bytes(f) for f in frames], SIGNER)
    assert bytes(msg.buffers[0]) == big.tobytes() and bytes(msg.buffers[1]) == small
    # Buffers that fit stay one frame each and the header does not mention them.
    frames = framing.encode(framing.make_header("x", "s"), {}, [small, small], SIGNER)
    assert len(frames) == 6 and "buffer_frames" not in msgpack.unpackb(frames[2])


@pytest.mark.parametrize("counts", [[2, 2], [0, 3], [4], "3", [1, True, 1], [1] * 3 + [-1, 1]])
def test_a_wrong_buffer_frames_list_is_a_bad_header(counts):
    header = {**framing.make_header("x", "s"), "buffer_frames": counts}
    parts = [msgpack.packb(header), msgpack.packb({}), b"a", b"b", b"c"]
    with pytest.raises(ProtocolError) as err:
        decode([spec.DELIMITER, SIGNER.sign(parts), *parts], SIGNER)
    assert err.value.code == spec.ErrorCode.BAD_HEADER and err.value.parent_id


def test_frames_and_buffers_over_their_limits_are_too_large():
    limits = {"max_frame_bytes": 1000, "max_buffer_bytes": 2500}
    ok = framing.encode(framing.make_header("x", "s"), {}, [b"a" * 2500], SIGNER, max_frame_bytes=1000)
    assert len(decode(ok, SIGNER, limits).buffers[0]) == 2500
    too_long = framing.encode(framing.make_header("x", "s"), {}, [b"a" * 2501], SIGNER, max_frame_bytes=1000)
    too_wide = framing.encode(framing.make_header("x", "s"), {}, [b"a" * 1001], SIGNER, max_frame_bytes=2000)
    for frames, what in ((too_long, "buffer 0 of 2501"), (too_wide, "frame 0 of 1001")):
        with pytest.raises(ProtocolError) as err:
            decode(frames, SIGNER, limits)
        assert err.value.code == spec.ErrorCode.TOO_LARGE and what in str(err.value)
