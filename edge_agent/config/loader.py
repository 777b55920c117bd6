"""Load YAML into the config model, with ${ENV} substitution and line-numbered errors.

Pydantic reports error locations as key paths; we keep a map from each YAML node's path to
its line so every problem can say where in the file it is.

The file is untrusted input: it is read only up to ``MAX_CONFIG_BYTES``, must be UTF-8
text, and its YAML graph, aliases expanded, may hold at most ``MAX_NODES`` nodes nested at
most ``MAX_DEPTH`` deep (a few hundred bytes of aliases can otherwise expand to billions
of nodes). Values that came from ``${VAR}`` and credentials inside URLs are never echoed
in an error.

Large plants (50,000 tags, a few MB) must still load in seconds, so the expensive steps run
only when needed: a file with no anchor (``&``) cannot expand, and is loaded directly by
libyaml after a cheap upper bound on its node count; the node tree that maps key paths to
lines is built only when a problem has to be reported; JSON (a YAML subset, e.g. a
generated config) is parsed by ``json``.
"""

from __future__ import annotations

__all__ = ["MAX_CONFIG_BYTES", "MAX_DEPTH", "MAX_NODES", "load_config", "load_yaml_model", "parse_config"]

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from edge_agent.config.model import AgentConfig, build_config_model
from edge_agent.config.redact import redact_urls
from edge_agent.errors import ConfigError, ConfigProblem

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
PathKey = tuple[str | int, ...]
_JSON_START = re.compile(r"\s*\{")

MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a 50,000-tag plant is ~5 MB
MAX_NODES = 1_000_000  # YAML nodes after alias expansion (a 50,000-tag plant has ~600,000)
#: Above this many nodes a problem is reported by its key path alone: the node tree that maps
#: paths to lines costs ~600 bytes and ~10 µs a node, too much for a hostile file.
MAX_LINE_INDEX_NODES = 300_000
MAX_DEPTH = 64
# libyaml's parser when present: the pure-Python one takes ~20 s on a 50,000-tag config
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _problem(file: str, message: str, line: int | None = None) -> ConfigError:
    return ConfigError(file, [ConfigProblem("", line, message)])


def _check_graph(root: yaml.Node, file: str) -> None:
    """Refuse graphs that expand (aliases) beyond MAX_NODES or nest beyond MAX_DEPTH."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if depth > MAX_DEPTH:
            raise _problem(
                file,
                f"YAML nested deeper than {MAX_DEPTH} levels; a config never needs that",
                node.start_mark.line + 1,
            )
        total = 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k, depth + 1) + size(v, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for v in node.value:
                total += size(v, depth + 1)
        if total > MAX_NODES:
            raise _problem(
                file,
                f"YAML expands to more than {MAX_NODES} values (aliases included); refusing it. "
                "Use fewer or smaller '*alias' references",
                node.start_mark.line + 1,
            )
        sizes[id(node)] = total
        return total

    size(root, 0)


def _node_bound(text: str) -> int:
    """An upper bound on the YAML nodes of a text without anchors: every value but the first
    is opened by a line break, a comma, a colon or a dash (counted in C, no parsing)."""
    return 1 + text.count("\n") + text.count(",") + text.count(":") + text.count("-")


class _LineIndex:
    """The 1-based line of every key and list item, worked out only when a problem is reported:
    composing the node tree costs as much again as parsing, which a 50,000-tag file feels."""

    def __init__(self, text: str, lines: dict[PathKey, int] | None = None) -> None:
        self._text = text
        self._lines = lines

    def get(self, path: PathKey) -> int | None:
        if self._lines is None:
            small = _node_bound(self._text) <= MAX_LINE_INDEX_NODES
            self._lines = (_compose_checked(self._text, "<config>")[1]._lines or {}) if small else {}
        return self._lines.get(path)


@contextlib.contextmanager
def _yaml_errors(file: str) -> Iterator[None]:
    """What the YAML parser can raise, as a ConfigError that says where and why."""
    try:
        yield
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise _problem(file, f"not valid YAML: {exc}", line) from None
    except RecursionError:
        raise _problem(file, "YAML nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a date like 2024-13-45
        raise _problem(file, f"not valid YAML: a value cannot be read: {exc}") from None


def _compose(text: str, file: str) -> tuple[Any, _LineIndex]:
    """Parse the config; a text with anchors is checked node by node before it is built."""
    if "&" in text:  # aliases can expand: count the real graph before constructing anything
        return _compose_checked(text, file)
    if _node_bound(text) > MAX_NODES:
        raise _problem(
            file,
            f"the file holds more than {MAX_NODES} values; no plant config needs that many. "
            "Check that this is the config file",
        )
    if _JSON_START.match(text):  # JSON (a YAML subset), e.g. a generated config: 100x faster
        try:
            return json.loads(text), _LineIndex(text)
        except ValueError:
            pass  # YAML flow style, or broken: the YAML parser decides and reports
    with _yaml_errors(file):
        return yaml.load(text, Loader=_Loader), _LineIndex(text)  # a safe loader


def _compose_checked(text: str, file: str) -> tuple[Any, _LineIndex]:
    """Parse YAML once, refusing graphs that expand too far, and record every key's line."""
    try:
        loader = _Loader(text)
    except UnicodeError as exc:
        raise _problem(file, f"not valid text: {exc}") from None
    try:
        with _yaml_errors(file):
            root = loader.get_single_node()
            if root is not None:
                _check_graph(root, file)
            data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
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
    return data, _LineIndex(text, lines)


class _Substituted:
    """Where ``${VAR}`` values went and what they were, so no error can echo them."""

    def __init__(self) -> None:
        self.paths: set[PathKey] = set()
        self.values: dict[str, str] = {}  # value -> the ${VAR} it came from
        self.written: dict[str, str] = {}  # dotted path -> the text with its ${VAR}s, as in the file

    def touches(self, path: PathKey) -> bool:
        return any(p[: len(path)] == path or path[: len(p)] == p for p in self.paths)

    def redact(self, text: str) -> str:
        for value in sorted(self.values, key=len, reverse=True):
            if len(value) >= 3:
                text = text.replace(value, self.values[value])
        return redact_urls(text)


def _substitute(
    data: Any,
    path: PathKey,
    problems: list[ConfigProblem],
    lines: _LineIndex,
    subs: _Substituted,
) -> Any:
    """Replace ${VAR} in strings from the environment; a missing variable is a problem."""
    if isinstance(data, dict):
        return {k: _substitute(v, (*path, str(k)), problems, lines, subs) for k, v in data.items()}
    if isinstance(data, list):
        return [_substitute(v, (*path, i), problems, lines, subs) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:
        subs.paths.add(path)
        subs.written[_dotted(path)] = data

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
            value = os.environ[name]
            subs.values.setdefault(value, "${" + name + "}")
            return value

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


def _problems(
    exc: ValidationError, data: Any, lines: _LineIndex, subs: _Substituted
) -> list[ConfigProblem]:
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
            if subs.touches(path):
                msg = f"{msg} (the value comes from an environment variable; not shown)"
            elif not isinstance(shown, dict | list):
                text = repr(shown)
                msg = f"{msg} (got {text[:120]}{'…' if len(text) > 120 else ''})"
        out.append(ConfigProblem(_dotted(path), line, subs.redact(msg)))
    return out


def _by_line(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    return sorted(problems, key=lambda p: p.line if p.line is not None else 0)


Command = Literal["run", "ingest"]


def parse_config(text: str, *, file: str = "<config>", command: Command = "run") -> AgentConfig:
    """Validate YAML text against the config model with the installed drivers.

    ``command="ingest"`` needs no ``assets``/``devices`` (ingest reads only mqtt, influxdb,
    buffer and agent).
    """
    from edge_agent.plugins import driver_registry

    if len(text) > MAX_CONFIG_BYTES:
        raise _problem(file, _too_big(len(text.encode("utf-8", "surrogatepass"))))
    data, lines = _compose(text, file)
    if not isinstance(data, dict):
        wanted = "'mqtt' and 'influxdb'" if command == "ingest" else "'assets' and 'devices'"
        raise _problem(file, f"expected a mapping with {wanted}", 1)
    if command == "ingest":
        data = {"assets": [], "devices": [], **data}
    problems: list[ConfigProblem] = []
    subs = _Substituted()
    if "${" in text:  # walking a 50,000-tag tree for nothing costs most of a second
        data = _substitute(data, (), problems, lines, subs)
    model = build_config_model([d.config_model for d in driver_registry().values()])
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems(exc, data, lines, subs))
        raise ConfigError(file, _by_line(problems)) from None
    except RecursionError:
        raise _problem(file, "config nested too deeply") from None
    if problems:
        raise ConfigError(file, _by_line(problems))
    config._env_refs = subs.written
    return config


def _too_big(n: int) -> str:
    return (
        f"file is larger than the {MAX_CONFIG_BYTES // 1024} KiB a config may have ({n} bytes or more); "
        "is this the right file?"
    )


def _read_text(p: Path) -> str:
    """UTF-8 text of at most MAX_CONFIG_BYTES, or a ConfigError that says what the file is instead."""
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise _problem(str(p), f"cannot read file: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise _problem(str(p), _too_big(len(raw)))
    if b"\x00" in raw:
        raise _problem(str(p), "this is a binary file, not a YAML config; check the path")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _problem(
            str(p),
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save the file as UTF-8",
            line,
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def load_config(path: str | Path, *, command: Command = "run") -> AgentConfig:
    """Read and validate a config file; every problem is reported with its line."""
    p = Path(path)
    return parse_config(_read_text(p), file=str(p), command=command)


M = TypeVar("M", bound=BaseModel)


def load_yaml_model(path: str | Path, model: type[M], *, what: str) -> M:
    """Read another YAML file the agent trusts no more than its config (an M&V plan) into
    ``model``, with the same limits; every problem is reported with its line."""
    p = Path(path)
    data, lines = _compose(_read_text(p), str(p))
    if not isinstance(data, dict):
        raise _problem(str(p), f"expected {what} (a YAML mapping)", 1)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(p), _by_line(_problems(exc, data, lines, _Substituted()))) from None
