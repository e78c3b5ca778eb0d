"""Inputs by URL: public http(s) only (loopback, private, link-local/metadata refused, also after redirects),
size and time caps; a local server on 127.0.0.1 is reachable only with the explicit test setting."""
import http.server
import os
import threading

import grpc
import pytest

from gateway import fetch
from lipsync.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from tests import helpers
from tools.stack import Stack


class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        routes = {"/to-private": "http://10.1.2.3/x", "/to-metadata": "http://169.254.169.254/latest/meta-data/",
                  "/loop": "/loop", "/to-face": "/face.png"}
        if self.path in routes:
            self.send_response(302)
            self.send_header("Location", routes[self.path])
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    helpers.write_png(str(root / "face.png"), helpers.face_image())
    helpers.write_wav(str(root / "a.wav"), helpers.speech_like([(0.4, True)]))
    (root / "empty.bin").write_bytes(b"")
    (root / "big.bin").write_bytes(b"\0" * 300_000)
    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass      # the fetcher hangs up on purpose (size cap): no traceback

    httpd = Server(("127.0.0.1", 0), lambda *a: Handler(*a, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.0.0.7", "172.16.5.4", "192.168.1.1", "169.254.169.254", "0.0.0.0",
                                "::1", "fd00:ec2::254", "fe80::1", "::ffff:127.0.0.1", "224.0.0.1", "100.64.0.1"])
def test_non_public_addresses_are_refused(ip):
    with pytest.raises(fetch.FetchError, match="non-public"):
        fetch.check_address(ip)


def test_public_addresses_pass():
    for ip in ("8.8.8.8", "2606:4700:4700::1111", "151.101.1.69"):
        fetch.check_address(ip)


def test_loopback_only_with_the_test_setting(server, tmp_path):
    dest = str(tmp_path / "f")
    with pytest.raises(fetch.FetchError, match="127.0.0.1, a non-public address"):
        fetch.fetch(f"{server}/face.png", dest, 10**7)
    assert fetch.fetch(f"{server}/face.png", dest, 10**7, allow_loopback=True) == os.path.getsize(dest) > 1000
    assert fetch.fetch(f"{server}/to-face", dest, 10**7, allow_loopback=True) > 1000     # a safe redirect


@pytest.mark.parametrize("path, error, words", [
    ("/to-private", fetch.FetchError, "10.1.2.3"),             # redirects are checked again
    ("/to-metadata", fetch.FetchError, "169.254.169.254"),
    ("/loop", fetch.FetchError, "redirected more than 3"),
    ("/missing", fetch.FetchError, "HTTP 404"),
    ("/empty.bin", fetch.FetchError, "empty"),
    ("/big.bin", fetch.TooLarge, "above the limit"),
])
def test_hostile_urls(server, tmp_path, path, error, words):
    with pytest.raises(error, match=words):
        fetch.fetch(f"{server}{path}", str(tmp_path / "f"), 100_000, allow_loopback=True)


@pytest.mark.parametrize("url, words", [("file:///etc/passwd", "scheme 'file'"), ("ftp://example.com/x", "scheme"),
                                        ("http://user:pw@example.com/x", "credentials"), ("http:///x", "no host")])
def test_bad_urls(url, words, tmp_path):
    with pytest.raises(fetch.FetchError, match=words):
        fetch.fetch(url, str(tmp_path / "f"), 1000)


def call(addr, options, extra=()):
    with grpc.insecure_channel(addr) as ch:
        stub = gateway_pb2_grpc.LipsyncGatewayStub(ch)
        return list(stub.Lipsync(iter([gateway_pb2.LipsyncRequest(options=options), *extra])))


def test_the_gateway_refuses_loopback_urls_by_default(stack, server, assert_healthy):
    opts = common_pb2.LipsyncOptions(face_url=f"{server}/face.png", audio_url=f"{server}/a.wav")
    with pytest.raises(grpc.RpcError) as e:
        call(stack.addrs["gateway"], opts)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "non-public" in e.value.details()


def test_urls_end_to_end_with_the_test_setting(server, tmp_path):
    s = Stack.start(str(tmp_path / "stack"), env={"URL_ALLOW_LOOPBACK": "1", "MODELS_DIR": str(tmp_path / "m")})
    try:
        opts = common_pb2.LipsyncOptions(face_url=f"{server}/face.png", audio_url=f"{server}/a.wav")
        out = call(s.addrs["gateway"], opts)
        assert out[-1].summary.frames == 10
        wav = open(os.path.join(os.path.dirname(__file__), "..", "..", "assets", "demo_speech.wav"), "rb").read()
        only_face = common_pb2.LipsyncOptions(face_url=f"{server}/face.png")
        out = call(s.addrs["gateway"], only_face, [gateway_pb2.LipsyncRequest(media=gateway_pb2.MediaChunk(
            kind=gateway_pb2.MEDIA_KIND_AUDIO, chunk=common_pb2.Chunk(offset=0, data=wav, last=True)))])
        assert out[-1].summary.frames > 0                    # one input by URL, the other uploaded
        with pytest.raises(grpc.RpcError) as e:              # uploading an input that is also given as a URL
            call(s.addrs["gateway"], only_face, [gateway_pb2.LipsyncRequest(media=gateway_pb2.MediaChunk(
                kind=gateway_pb2.MEDIA_KIND_FACE, chunk=common_pb2.Chunk(offset=0, data=b"x", last=True)))])
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "given as a URL" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            call(s.addrs["gateway"], common_pb2.LipsyncOptions(face_url=f"{server}/missing", audio_url=f"{server}/a.wav"))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "HTTP 404" in e.value.details()
    finally:
        s.stop()
