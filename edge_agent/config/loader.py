"""Load YAML into the config model, with ${ENV} substitution and line-numbered errors.

Pydantic reports error locations as key paths; we keep a map from each YAML node's path to
its line so every problem can say where in the file it is.
"""

from __future__ import annotations

__all__ = ["load_config", "parse_config"]

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edge_agent.config.model import AgentConfig, build_config_model
from edge_agent.errors import ConfigError, ConfigProblem

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
PathKey = tuple[str | int, ...]
# libyaml's parser when present: the pure-Python one takes ~20 s on a 50,000-tag config
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineIndex:
    """The 1-based line of every key and list item, worked out only when a problem is reported:
    composing the node tree costs as much again as parsing, which a 50,000-tag file feels."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._lines: dict[PathKey, int] | None = None

    def get(self, path: PathKey) -> int | None:
        if self._lines is None:
            self._lines = _lines_of(yaml.compose(self._text, Loader=_Loader))
        return self._lines.get(path)


def _lines_of(root: yaml.Node | None) -> dict[PathKey, int]:
    lines: dict[PathKey, int] = {}

    def walk(node: yaml.Node, path: PathKey) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return lines


def _compose(text: str, file: str) -> tuple[Any, _LineIndex]:
    """Parse YAML; lines of keys and list items are looked up on demand."""
    if text.lstrip().startswith("{"):  # JSON (a YAML subset), e.g. a generated config: 100x faster
        try:
            return json.loads(text), _LineIndex(text)
        except ValueError:
            pass  # YAML flow style, or broken: the YAML parser decides and reports
    try:
        data = yaml.load(text, Loader=_Loader)  # a safe loader (CSafeLoader or SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(file, [ConfigProblem("", line, f"not valid YAML: {exc}")]) from exc
    return data, _LineIndex(text)


def _substitute(data: Any, path: PathKey, problems: list[ConfigProblem], lines: _LineIndex) -> Any:
    """Replace ${VAR} in strings from the environment; a missing variable is a problem."""
    if isinstance(data, dict):
        return {k: _substitute(v, (*path, str(k)), problems, lines) for k, v in data.items()}
    if isinstance(data, list):
        return [_substitute(v, (*path, i), problems, lines) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                problems.append(
                    ConfigProblem(
                        _dotted(path),
                        lines.get(path),
                        f"environment variable {name} is not set; export it before starting "
                        "the agent (secrets belong in the environment, not in the file)",
                    )
                )
                return ""
            return os.environ[name]

        return _ENV.sub(repl, data)
    return data


def _dotted(path: PathKey) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def _locate(data: Any, loc: tuple[int | str, ...]) -> PathKey:
    """Map a pydantic error location onto the YAML path, dropping union tags it inserts."""
    path: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part == node.get("driver"):
            continue  # discriminator tag inserted by pydantic
        else:
            if isinstance(part, str) and not part.startswith(("function-", "list[", "union[")):
                path.append(part)  # the key that is missing or unknown
            break
    return tuple(path)


def _problems(exc: ValidationError, data: Any, lines: _LineIndex) -> list[ConfigProblem]:
    out = []
    for err in exc.errors(include_url=False):
        path = _locate(data, tuple(err["loc"]))
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            path = (*path, "driver")
        line = lines.get(path)
        probe = path
        while line is None and probe:
            probe = probe[:-1]
            line = lines.get(probe)
        msg = err["msg"]
        if err["type"] == "union_tag_invalid":
            ctx = err.get("ctx", {})
            msg = (
                f"unknown driver {ctx.get('tag')!r}; installed drivers are {ctx.get('expected_tags')} "
                "(see 'edge-agent drivers', or install the plugin that provides it)"
            )
        elif err["type"] == "union_tag_not_found":
            msg = "required key 'driver' is missing; name the driver, e.g. driver: modbus"
        elif err["type"] == "extra_forbidden":
            msg = f"unknown key {path[-1]!r}; remove it or check its spelling"
        elif err["type"] == "missing":
            msg = f"required key {path[-1]!r} is missing"
        elif "input" in err and err["type"] not in ("value_error", "assertion_error"):
            shown = err["input"]
            if not isinstance(shown, dict | list):
                msg = f"{msg} (got {shown!r})"
        out.append(ConfigProblem(_dotted(path), line, msg))
    return out


def _by_line(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    return sorted(problems, key=lambda p: p.line if p.line is not None else 0)


def parse_config(text: str, *, file: str = "<config>") -> AgentConfig:
    """Validate YAML text against the config model with the installed drivers."""
    from edge_agent.plugins import driver_registry

    data, lines = _compose(text, file)
    if not isinstance(data, dict):
        raise ConfigError(file, [ConfigProblem("", 1, "expected a mapping with 'assets' and 'devices'")])
    problems: list[ConfigProblem] = []
    if "${" in text:  # walking a 50,000-tag tree for nothing costs most of a second
        data = _substitute(data, (), problems, lines)
    model = build_config_model([d.config_model for d in driver_registry().values()])
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems(exc, data, lines))
        raise ConfigError(file, _by_line(problems)) from None
    if problems:
        raise ConfigError(file, _by_line(problems))
    return config


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate a config file; every problem is reported with its line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [ConfigProblem("", None, f"cannot read file: {exc.strerror}")]) from exc
    return parse_config(text, file=str(p))
