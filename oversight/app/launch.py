"""Start an OpenAI-compatible server as a child process and wait until it answers: vLLM's
(`python -m vllm.entrypoints.openai.api_server`) or llama.cpp's, for oversight-bench and the
server contract tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, Sequence


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(command: Sequence[str], url: str, log: Path, *, env: dict[str, str] | None = None,
                   timeout_s: float = 600, name: str = "the server") -> Iterator[str]:
    """Run `command` (its output to `log`) until `url`/models answers 200; yield `url`; stop it after.
    A server that exits or does not answer in `timeout_s` raises, with the end of its log."""
    import httpx

    with open(log, "wb") as out:
        process = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: {log.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer in {timeout_s:.0f} s: {log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
