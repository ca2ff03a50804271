"""A throwaway `redis-server` process for tests.

`RedisServer` runs the real redis-server from PATH on 127.0.0.1 and a free port, with
persistence off, and can be stopped and started again on the same port (tests take Redis
away mid-test and bring it back). It speaks just enough RESP over a socket to PING and
FLUSHALL, so the fixture needs no Redis client library.

It deliberately does not install Redis (`make test` does), configure replication or
auth, or share a server between pytest sessions.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class RedisServerError(RuntimeError):
    """redis-server is missing or did not come up."""


class RedisServer:
    def __init__(self, executable: str = "redis-server") -> None:
        path = shutil.which(executable)
        if path is None:
            raise RedisServerError(
                f"{executable!r} not found on PATH; `make test` installs it "
                "(or install the redis-server package)"
            )
        self._executable = path
        self._dir = Path(tempfile.mkdtemp(prefix="ytproxy-redis-"))
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None
        atexit.register(self.close)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart) the server on the same port and wait until it answers PING."""
        if self.running:
            return
        log = (self._dir / "redis.log").open("ab")
        with log:
            self._process = subprocess.Popen(
                [
                    self._executable,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self._dir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                if self.command("PING") == b"+PONG":
                    return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        tail = (self._dir / "redis.log").read_text(errors="replace")[-2000:]
        raise RedisServerError(f"redis-server did not answer PING on port {self.port}:\n{tail}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def flush(self) -> None:
        """Empty every database (starting the server first if a test left it stopped)."""
        self.start()
        reply = self.command("FLUSHALL")
        if reply != b"+OK":
            raise RedisServerError(f"FLUSHALL answered {reply!r}")

    def command(self, *args: str) -> bytes:
        """Send one command and return the first line of the reply (enough for simple
        replies such as +PONG, +OK or :1)."""
        request = f"*{len(args)}\r\n".encode()
        for arg in args:
            data = arg.encode()
            request += b"$%d\r\n%s\r\n" % (len(data), data)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
            conn.sendall(request)
            reply = b""
            while not reply.endswith(b"\r\n"):
                data = conn.recv(4096)
                if not data:
                    raise ConnectionError("redis closed the connection")
                reply += data
        return reply.split(b"\r\n", 1)[0]

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
