"""Issue 14 F1: a peer must prove the key in the ZeroMQ handshake before the daemon takes a message from it
(PROTOCOL.md §1, 2.0), frames are at most `max_frame_bytes` so a handshake cannot make the daemon hold more,
authenticated connections are capped, and big buffers still travel whole, as several frames, both ways.

All against a real daemon on loopback: libzmq's PLAIN and NULL mechanisms from pyzmq, the pure-Python ZMTP client,
and raw TCP peers that speak just enough ZMTP to misbehave.
"""

from __future__ import annotations

import socket
import struct
import time

import numpy as np
import pytest
import zmq
from daemons import raw_dealer
from draggan_protocol import DaemonUnreachable
from draggan_protocol.framing import encode, make_header
from draggan_protocol.signing import Signer, plain_credentials
from draggan_protocol.spec import DEFAULT_LIMITS
from draggan_protocol.transport import HandshakeRefused, TransportError
from draggan_protocol.zmtp import ZmtpDealer, greeting
from test_daemon_support import client_for, running_daemon

MIB = 1 << 20


def _address(endpoint: str) -> tuple[str, int]:
    host, port = endpoint.rsplit("//", 1)[1].rsplit(":", 1)
    return host, int(port)


def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    """True when the daemon closes this TCP connection within `within` seconds (whatever it sent before)."""
    sock.settimeout(0.2)
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_a_peer_without_the_key_cannot_deliver_a_message_of_any_size():
    with running_daemon() as server:
        ctx = zmq.Context()
        try:
            # A DEALER whose only connection the daemon refused has no peer left, and a send there waits for one
            # for ever (it did, now and then, when the refusal came before the send): the sends time out instead.
            # Not even queued is not delivered either; what the daemon received is asserted below.
            null = raw_dealer(ctx, server.endpoint, None, sndtimeo=2000)  # NULL: what a 1.x client or a stranger speaks
            wrong = raw_dealer(ctx, server.endpoint, b"not-the-key", sndtimeo=2000)  # PLAIN with a made-up key
            key = Signer(server.config.key)
            hello = encode(make_header("hello", "x"), {"client": "stranger"}, [], key)  # even a validly signed one
            big = [b"<DRAGGAN|MSG>", b"0" * 64, b"h", b"c", *[bytes(MIB)] * 4]
            for sock in (null, wrong):
                for message in (hello, big):
                    try:
                        sock.send_multipart(message)
                    except zmq.Again:
                        pass
            assert not null.poll(1500) and not wrong.poll(100), "a peer without the key got an answer"
            assert server.stats["received"] == 0, "libzmq delivered a message from a peer that had not proven the key"
            assert server.admission.stats["refused_key"] >= 1  # the wrong password; NULL never reaches ZAP
            with client_for(server) as good:  # and the daemon serves key holders as before
                assert good.hello()["device"] == "cpu"
        finally:
            ctx.destroy(linger=0)


def test_the_pure_python_client_hears_why_its_key_was_refused():
    with running_daemon() as server:
        with pytest.raises(TransportError, match="refused this connection's key"):
            ZmtpDealer(server.endpoint, plain=plain_credentials(b"stale-connection-file"), connect_timeout=5)
        with pytest.raises(TransportError, match="want the connection key|asks for the connection key"):
            ZmtpDealer(server.endpoint, connect_timeout=5)  # no key at all
        with ZmtpDealer(server.endpoint, plain=plain_credentials(server.config.key)) as ok:
            assert ok.peer_properties[b"socket-type"] == b"ROUTER"


def test_a_huge_handshake_command_is_dropped_as_soon_as_it_is_declared():
    """Before 2.0 a frame could be 256 MiB, also in the handshake: a stranger's HELLO of that size was read whole."""
    with running_daemon() as server:
        peer = socket.create_connection(_address(server.endpoint))
        try:
            peer.sendall(greeting(b"PLAIN"))
            peer.sendall(bytes([0x06]) + struct.pack(">Q", 255 * MIB) + b"\x05HELLO")  # a long command frame
            sent = 0
            peer.settimeout(0.5)
            try:
                while sent < 64 * MIB:  # stream its body; the daemon must hang up long before it is done
                    sent += peer.send(bytes(MIB))
            except OSError:
                pass
            assert _closed_by_peer(peer, 5.0), "the daemon kept reading a 255 MiB handshake command"
            assert sent < 2 * DEFAULT_LIMITS["max_frame_bytes"] + 8 * MIB  # socket buffers, not the whole body
        finally:
            peer.close()
        assert server.stats["received"] == 0


def test_a_handshake_that_never_finishes_is_dropped():
    with running_daemon() as server:
        peer = socket.create_connection(_address(server.endpoint))
        try:
            peer.sendall(greeting(b"PLAIN"))  # ...and then nothing: no HELLO
            t0 = time.monotonic()
            assert _closed_by_peer(peer, 10.0)
            assert time.monotonic() - t0 < 8.0  # ZMQ_HANDSHAKE_IVL is 5 s
        finally:
            peer.close()


def test_authenticated_connections_are_capped_and_a_closed_one_frees_its_place():
    with running_daemon(limits={"max_connections": 2}) as server:
        plain = plain_credentials(server.config.key)
        first = ZmtpDealer(server.endpoint, plain=plain)
        second = ZmtpDealer(server.endpoint, plain=plain)
        try:
            deadline = time.monotonic() + 5
            while len(server.admission.live) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            with pytest.raises(TransportError, match="too many connections open"):
                ZmtpDealer(server.endpoint, plain=plain, connect_timeout=5)
            assert server.admission.stats["refused_busy"] == 1
        finally:
            first.close()
        deadline = time.monotonic() + 5
        while len(server.admission.live) > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            with ZmtpDealer(server.endpoint, plain=plain, connect_timeout=5):
                pass
        finally:
            second.close()


@pytest.mark.parametrize("transport", ["pyzmq", "zmtp"])
def test_a_layer_larger_than_a_frame_goes_up_and_comes_back_whole(transport):
    """A 1500 × 1100 RGBA layer is 6.3 MiB: two frames of 4 MiB each way (header.buffer_frames)."""
    w, h = 1500, 1100
    pixels = np.random.default_rng(3).integers(0, 256, size=(h, w, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    with running_daemon() as server, client_for(server, transport_kind=transport) as c:
        c.hello()
        sid = c.open_layer_session(pixels.tobytes(), w, h, timeout=60)["session_id"]
        back = c.get_result(sid, timeout=60)
        assert (back.width, back.height) == (w, h)
        assert back.pixels == pixels.tobytes()


@pytest.mark.parametrize("transport", ["pyzmq", "zmtp"])
def test_a_client_with_a_wrong_key_hears_at_once_that_it_was_refused(transport):
    """Both transports raise HandshakeRefused (a DaemonUnreachable too), long before the request's timeout: pyzmq
    through its socket monitor (libzmq alone would retry quietly), the pure-Python one from the ERROR command."""
    with running_daemon() as server:
        t0 = time.monotonic()
        with pytest.raises(HandshakeRefused, match="refused this connection's key") as err:
            with client_for(server, key=b"0" * 64, transport_kind=transport) as c:
                c.hello(timeout=20)
        assert time.monotonic() - t0 < 5 and isinstance(err.value, DaemonUnreachable)
        assert server.stats["received"] == 0


def test_one_address_gets_at_most_its_share_of_connections():
    """The per-address cap, through a real ZAP socket; loopback is exempt in the daemon (all local clients share
    127.0.0.1), so here the exemption is off and three real loopback connections stand for one remote host."""
    from draggan_daemon.server.admission import ZAP_ENDPOINT, Admission, peer_address

    ctx = zmq.Context()
    password = plain_credentials(b"k")
    admission = Admission(ctx, password=password, max_per_address=2, exempt_loopback=False)
    listener = socket.create_server(("127.0.0.1", 0))
    pairs = []
    try:
        for _ in range(3):
            client = socket.create_connection(listener.getsockname())
            pairs.append((client, listener.accept()[0]))
        asker = ctx.socket(zmq.REQ)
        asker.connect(ZAP_ENDPOINT)

        def ask() -> bytes:
            asker.send_multipart([b"1.0", b"1", b"draggan", b"127.0.0.1", b"", b"PLAIN", *password])
            assert admission.socket.poll(2000)
            admission.handle()
            return asker.recv_multipart()[2]

        for n, (_, accepted) in enumerate(pairs, 1):
            assert peer_address(accepted.fileno()) == "127.0.0.1"
            admission.accepted(accepted.fileno())
            assert ask() == (b"200" if n <= 2 else b"500"), n
        admission.disconnected(pairs[0][1].fileno())
        assert ask() == b"200"
        asker.close(0)
    finally:
        for a, b in pairs:
            a.close()
            b.close()
        listener.close()
        admission.close()
        ctx.destroy(linger=0)
