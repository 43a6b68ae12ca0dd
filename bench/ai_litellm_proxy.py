"""The LiteLLM proxy (the gateway a user would pick instead of the worker), for the benchmark.

``litellm --config`` runs as a child process on 127.0.0.1 with a master key minted for the run,
its one model pointing at the provider simulator; requests are OpenAI Chat Completions over
HTTP with that key. It needs ``litellm[proxy]`` (the bench extras install it); without it the
figure is reported as skipped. It runs offline (``LITELLM_LOCAL_MODEL_COST_MAP=True``, no
database).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

__all__ = ["proxy_samples"]

Timed = Callable[[int, Callable[[int], Awaitable[Any]]], Awaitable[list[float]]]
_START_TIMEOUT_S = 90.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _litellm() -> str | None:
    beside = Path(sys.executable).with_name("litellm")
    return str(beside) if beside.exists() else shutil.which("litellm")


@contextlib.asynccontextmanager
async def _proxy(model: str, api_base: str, api_key: str) -> AsyncIterator[tuple[str, str]]:
    """A running proxy: (its base URL, its master key)."""
    command = _litellm()
    if command is None:
        raise FileNotFoundError("litellm[proxy] is not installed")
    port, master = _free_port(), "sk-" + secrets.token_hex(16)
    config = {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": api_base,
                    "api_key": api_key,
                    "max_retries": 0,
                },
            }
        ],
        "litellm_settings": {"num_retries": 0, "telemetry": False},
    }
    with tempfile.TemporaryDirectory(prefix="eg-bench-litellm-") as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        env = {
            **os.environ,
            "LITELLM_MASTER_KEY": master,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
        }
        process = await asyncio.create_subprocess_exec(
            command,
            "--config",
            str(path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=folder,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            await _until_alive(url, process)
            yield url, master
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def _until_alive(url: str, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(_START_TIMEOUT_S):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"the LiteLLM proxy exited with {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/health/liveliness") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.5)


async def proxy_samples(
    model: str,
    api_base: str,
    api_key: str,
    *,
    body: Callable[[int], dict[str, Any]],
    warmup: int,
    n: int,
    timed: Timed,
) -> list[float]:
    """Seconds per Chat Completions call through the proxy, ``n`` sequential calls."""
    async with _proxy(model, api_base, api_key) as (url, master), aiohttp.ClientSession() as s:
        headers = {"Authorization": f"Bearer {master}"}

        async def one(i: int) -> None:
            async with s.post(url + "/chat/completions", json=body(i), headers=headers) as r:
                assert r.status == 200, await r.text()
                await r.read()

        await timed(warmup, one)
        return await timed(n, one)
