"""A minimal DNS server for tests: answers A queries for the names it is given, NXDOMAIN otherwise (UDP, one
question per query, as c-ares sends them). Used to resolve one service name to several local addresses."""
from __future__ import annotations

import socket
import struct
import threading


def _name(data: bytes, i: int) -> tuple[str, int]:
    labels = []
    while data[i]:
        n = data[i]
        labels.append(data[i + 1:i + 1 + n].decode())
        i += n + 1
    return ".".join(labels).lower(), i + 1


class DnsStub:
    def __init__(self, records: dict[str, list[str]]):
        self.records = {k.lower().rstrip("."): v for k, v in records.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries: list[tuple[str, int]] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(512)
            except OSError:
                return
            qid, flags = struct.unpack(">HH", data[:4])
            name, end = _name(data, 12)
            qtype = struct.unpack(">H", data[end:end + 2])[0]
            question = data[12:end + 4]
            self.queries.append((name, qtype))
            answers = self.records.get(name, []) if qtype == 1 else []
            known = name in self.records
            rcode = 0 if known else 3
            head = struct.pack(">HHHHHH", qid, 0x8180 | rcode, 1, len(answers), 0, 0)
            body = b"".join(b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton(ip) for ip in answers)
            self.sock.sendto(head + question + body, addr)

    def close(self) -> None:
        self.sock.close()
