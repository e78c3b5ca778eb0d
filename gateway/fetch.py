"""Inputs by URL (LipsyncOptions.face_url / audio_url), fetched by the gateway without becoming an SSRF hole.

- http and https only; no credentials in the URL.
- The host is resolved once and every address must be public: loopback, private, link-local (which holds the
  cloud metadata endpoints, 169.254.169.254 and fd00:ec2::254), multicast, reserved and unspecified ranges are
  refused. The connection goes to the vetted address itself (the Host header and TLS SNI carry the name), so a
  second DNS answer cannot swap in an internal address (DNS rebinding).
- Redirects are followed by hand, at most 3, each target checked the same way.
- Size cap (MAX_UPLOAD_BYTES) and a total time cap (URL_TIMEOUT_S).
`allow_loopback` exists for tests only (URL_ALLOW_LOOPBACK=1): it admits 127.0.0.0/8 and nothing else.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from urllib.parse import urljoin, urlsplit

MAX_REDIRECTS = 3


class FetchError(ValueError):
    """The URL is not allowed or could not be fetched (INVALID_ARGUMENT)."""


class TooLarge(FetchError):
    """Over the size cap (RESOURCE_EXHAUSTED)."""


def check_address(ip: str, allow_loopback: bool = False) -> None:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if allow_loopback and addr.is_loopback and addr.version == 4:
        return
    if (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast or addr.is_reserved
            or addr.is_unspecified or not addr.is_global):
        raise FetchError(f"the URL resolves to {addr}, a non-public address: not allowed")


def resolve(host: str, port: int, allow_loopback: bool) -> str:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise FetchError(f"the URL's host {host!r} does not resolve: {e}") from None
    ips = sorted({info[4][0] for info in infos})
    for ip in ips:          # every answer must be public, not just the first
        check_address(ip, allow_loopback)
    return ips[0]


def _connect(scheme: str, host: str, port: int, ip: str, timeout: float) -> http.client.HTTPConnection:
    if scheme == "http":
        conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    else:
        ctx = ssl.create_default_context()

        class _Pinned(http.client.HTTPSConnection):
            def connect(self):
                sock = socket.create_connection((ip, port), timeout)
                self.sock = ctx.wrap_socket(sock, server_hostname=host)

        conn = _Pinned(host, port, timeout=timeout, context=ctx)
    return conn


def fetch(url: str, dest: str, max_bytes: int, timeout_s: float = 30.0, allow_loopback: bool = False) -> int:
    """Download url into dest; returns its size. Raises FetchError / TooLarge."""
    deadline = time.monotonic() + timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"URL scheme {parts.scheme!r} is not allowed: use http or https")
        if parts.username or parts.password:
            raise FetchError("URLs with credentials are not allowed")
        if not parts.hostname:
            raise FetchError("the URL has no host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        ip = resolve(parts.hostname, port, allow_loopback)
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError(f"fetching the URL took longer than {timeout_s:.0f} s")
        conn = _connect(parts.scheme, parts.hostname, port, ip, min(left, 10.0))
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
            conn.request("GET", path, headers={"Host": host_header, "User-Agent": "lipsync-gateway"})
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location")
                if not location:
                    raise FetchError(f"the URL redirected ({resp.status}) without a Location")
                url = urljoin(url, location)
                continue
            if resp.status != 200:
                raise FetchError(f"the URL answered HTTP {resp.status}")
            declared = resp.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise TooLarge(f"the URL's content is {declared} bytes, above the limit of {max_bytes}")
            size = 0
            with open(dest, "wb") as f:
                while True:
                    if time.monotonic() > deadline:
                        raise FetchError(f"fetching the URL took longer than {timeout_s:.0f} s")
                    block = resp.read(256 * 1024)
                    if not block:
                        break
                    size += len(block)
                    if size > max_bytes:
                        raise TooLarge(f"the URL's content is larger than the limit of {max_bytes} bytes")
                    f.write(block)
            if size == 0:
                raise FetchError("the URL's content is empty")
            return size
        except (OSError, http.client.HTTPException) as e:
            raise FetchError(f"the URL could not be fetched: {e}") from None
        finally:
            conn.close()
    raise FetchError(f"the URL redirected more than {MAX_REDIRECTS} times")
