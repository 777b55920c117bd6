"""Run a tutorial's blocks in order, as a reader would, in a scratch directory.

- ``bash``/``sh``/``shell`` blocks run with ``bash -euo pipefail`` (one process per block,
  so a ``cd`` does not carry over), ``python`` blocks with the tutorial's Python.
- A block with ``file=PATH`` is written to PATH (any language) instead of being run.
- ``text``/``console`` blocks and blocks without a language are output shown to the reader;
  YAML, TOML and JSON blocks without ``file=`` must at least parse.
- The default ports in the text (Mosquitto 1883, InfluxDB 8086, the simulator's 5020 and
  4840, the tutorial meter's 7000) are replaced by the ports of the servers the test started,
  so tutorials read naturally and tests run side by side.

Directives are described in tests/docblocks.py. The outcome lists every block: ran, written,
skipped (with reason), provided by a fixture (with reason), or pending (with the issue).
"""

from __future__ import annotations

__all__ = ["Outcome", "TutorialError", "run_tutorial"]

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from docblocks import Block, read_blocks

SHELLS = {"bash", "sh", "shell"}
PYTHON = {"python", "py"}
OUTPUT = {"", "text", "console", "output"}
_BLOCK_TIMEOUT = 300.0


class TutorialError(AssertionError):
    """A block failed: names the block, its line and its output."""


@dataclass
class Outcome:
    ran: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    fixtures: list[str] = field(default_factory=list)
    pending_failed: list[str] = field(default_factory=list)  # pending, and failing as expected
    pending_passed: list[str] = field(default_factory=list)  # pending, but it works: unmark it
    not_reached: list[str] = field(default_factory=list)  # after a pending block failed
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"{len(self.ran)} run", f"{len(self.written)} written"]
        for name in ("skipped", "fixtures", "pending_failed", "pending_passed", "not_reached"):
            items = getattr(self, name)
            if items:
                parts.append(f"{name.replace('_', ' ')}: " + "; ".join(items))
        return f"{self.seconds:.0f} s, " + ", ".join(parts)


@dataclass
class _Background:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    where: str


class _Runner:
    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        ports: dict[int, int],
        python: str,
        root: list[str],
        prefix: list[str],
    ) -> None:
        self.workdir = workdir
        self.root = root
        self.prefix = prefix
        self.env = env
        self.ports = ports
        self.python = python
        self.background: dict[str, _Background] = {}

    def substitute(self, text: str) -> str:
        for default, actual in self.ports.items():
            text = re.sub(rf"(?<![\d.]){default}(?!\d)", str(actual), text)
        return text

    def _command(self, block: Block, text: str) -> list[str]:
        prefix = self.root if "root" in block.directives else self.prefix
        if block.lang in SHELLS:
            return [*prefix, "bash", "-euo", "pipefail", "-c", text]
        return [*prefix, self.python, "-c", text]

    def run_once(self, block: Block, text: str) -> tuple[int, str]:
        run = subprocess.run(
            self._command(block, text), cwd=self.workdir, env=self.env, capture_output=True,
            stdin=subprocess.DEVNULL,  # a prompt (apt-get's "continue?") fails the block, never hangs
            timeout=float(block.directives.get("timeout", _BLOCK_TIMEOUT)),
        )  # fmt: skip
        return run.returncode, (run.stdout + run.stderr).decode(errors="replace")

    def run(self, block: Block) -> None:
        text = self.substitute(block.text)
        if "file" in block.directives:
            target = self.workdir / block.directives["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            return
        if block.lang not in SHELLS | PYTHON:
            _parse(block, text)
            return
        if "background" in block.directives:
            self.start(block, text)
            return
        retry = float(block.directives.get("retry", 0))
        deadline = time.monotonic() + retry
        while True:
            code, out = self.run_once(block, text)
            expect = block.directives.get("expect")
            expect = self.substitute(expect) if expect is not None else None
            ok = code == 0 and (expect is None or re.search(expect, out) is not None)
            if ok:
                return
            if time.monotonic() >= deadline:
                why = f"exit {code}" if code else f"output does not match {expect!r}"
                raise TutorialError(
                    f"{block.where}: block failed ({why}):\n{text}\n--- output ---\n{out[-4000:]}"
                )
            time.sleep(1.0)

    def start(self, block: Block, text: str) -> None:
        name = block.directives["background"]
        log = self.workdir / f".bg-{name}.log"
        handle = log.open("wb")
        proc = subprocess.Popen(
            self._command(block, _exec_last(text) if block.lang in SHELLS else text),
            cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        handle.close()
        self.background[name] = _Background(name, proc, log, block.where)
        ready = block.directives.get("ready")
        if ready is None:
            return
        ready = self.substitute(ready)
        deadline = time.monotonic() + float(block.directives.get("timeout", 60))
        while time.monotonic() < deadline:
            if re.search(ready, log.read_text(errors="replace")):
                return
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        out = log.read_text(errors="replace")[-4000:]
        raise TutorialError(
            f"{block.where}: background {name!r} not ready (no {ready!r} in its output):\n{out}"
        )

    def stop(self, name: str, where: str, *, expect_zero: bool) -> None:
        bg = self.background.pop(name, None)
        if bg is None:
            raise TutorialError(f"{where}: stop={name}, but no background command {name!r} is running")
        if bg.proc.poll() is None:
            bg.proc.send_signal(signal.SIGTERM)  # what Ctrl+C or systemctl stop does
            try:
                bg.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(bg.proc.pid, signal.SIGKILL)
                bg.proc.wait()
                out = bg.log.read_text(errors="replace")[-4000:]
                raise TutorialError(
                    f"{where}: {name!r} did not stop within 60 s of SIGTERM:\n{out}"
                ) from None
        if expect_zero and bg.proc.returncode != 0:
            out = bg.log.read_text(errors="replace")[-4000:]
            raise TutorialError(
                f"{where}: {name!r} ({bg.where}) exited {bg.proc.returncode} on SIGTERM:\n{out}"
            )

    def stop_all(self) -> None:
        for name in list(self.background):
            with contextlib.suppress(TutorialError):  # cleanup only; explicit stops are checked
                self.stop(name, "end of tutorial", expect_zero=False)


def _exec_last(text: str) -> str:
    """A one-command block runs as that command (exec), so SIGTERM reaches it, not a shell."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) == 1 and not re.search(r"[;&|]", lines[0]):
        return "exec " + lines[0]
    return text


def _parse(block: Block, text: str) -> None:
    try:
        if block.lang in {"yaml", "yml"}:
            yaml.safe_load(text)
        elif block.lang == "toml":
            tomllib.loads(text)
        elif block.lang == "json":
            json.loads(text)
    except ValueError as exc:
        raise TutorialError(f"{block.where}: {block.lang} block does not parse: {exc}") from exc


def run_tutorial(
    path: Path,
    workdir: Path,
    *,
    env: dict[str, str],
    ports: dict[int, int],
    python: str,
    root: list[str] | None = None,
    prefix: list[str] | None = None,
) -> Outcome:
    """Run every block of one tutorial; raise TutorialError at the first failing block.

    A failing ``pending`` block does not raise: it and everything after it are reported as
    pending (the feature is not merged yet), so the caller can xfail with the list. Blocks
    marked ``root`` run behind the command prefix ``root`` (e.g. ``nsenter`` into a private
    systemd's namespaces); without one they are reported as skipped. The other blocks run
    behind ``prefix``, if given (e.g. ``nsenter -n`` into the network where root blocks
    started the tutorial's servers).
    """
    out = Outcome()
    runner = _Runner(workdir, env, ports, python, root or [], prefix or [])
    started = time.monotonic()
    blocks = read_blocks(path)
    try:
        for index, block in enumerate(blocks):
            d = block.directives
            label = f"line {block.line}"
            if "skip" in d:
                out.skipped.append(f"{label} ({d['skip'] or d.get('reason', '')})")
                continue
            if "root" in d and root is None:
                out.skipped.append(f"{label} (needs root: {d['root']})")
                continue
            if "fixture" in d:
                out.fixtures.append(f"{label} ({d['fixture']})")
                continue
            if block.lang in OUTPUT and "file" not in d:
                continue
            try:
                if block.lang == "action":
                    runner.stop(d["stop"], block.where, expect_zero=True)
                else:
                    runner.run(block)
            except TutorialError as exc:
                if "pending" not in d:
                    raise
                out.pending_failed.append(f"{label} ({d['pending']}): {str(exc).splitlines()[0]}")
                out.not_reached = [
                    f"line {b.line}" + (f" ({b.directives['pending']})" if "pending" in b.directives else "")
                    for b in blocks[index + 1 :]
                    if b.lang not in OUTPUT
                ]
                break
            if "pending" in d:
                out.pending_passed.append(f"{label} ({d['pending']})")
            (out.written if "file" in d else out.ran).append(label)
    finally:
        runner.stop_all()
        out.seconds = time.monotonic() - started
    return out
