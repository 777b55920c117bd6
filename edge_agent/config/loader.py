"""Load YAML into the config model, with ${ENV} substitution and line-numbered errors.

Pydantic reports error locations as key paths; we keep a map from each YAML node's path to
its line so every problem can say where in the file it is.

The file is untrusted input. Every input must end in a config or a ConfigError within
2 s of CPU and 200 MB, and a 50,000-tag plant (6–9 MB of YAML or JSON) must validate in about
a second, so the limits below were chosen by measurement (tests/test_config_limits.py runs
the worst case at each limit in a fresh process):

- at most ``MAX_CONFIG_BYTES``, UTF-8 text;
- at most ``MAX_NODES`` values by a cheap upper bound counted before parsing;
- YAML: at most ``MAX_PARSE_MB`` of memory for the parse, by an estimate counted before it
  (config.yaml_pieces): the densest YAML the value bound let through (a '{a}' mapping per four
  characters) peaked at 385 MB;
- aliases may replay at most ``MAX_ALIAS_EVENTS`` YAML events (a 324-byte alias bomb
  otherwise expands to billions of nodes);
- at most ``MAX_TAGS`` tags, ``MAX_DEVICES`` devices, ``MAX_ASSETS`` assets and ``MAX_KEYS``
  entries in any other mapping or list (edge_agent.config.shape), checked before the model
  is validated; assets and tags are validated in chunks, up to ``MAX_PROBLEMS`` problems.

YAML is parsed by yaml-rs (Rust, YAML 1.2): PyYAML's libyaml binding took ~10 s and
~450 MB for a 50,000-tag file, yaml-rs ~0.3 s. It holds a document of its own (~40 % of a
parse) while it builds the Python objects, so block-style YAML is parsed in pieces of 16 kB
(config.yaml_pieces): a 50,000-tag plant peaks at ~155 MB as YAML in block or flow-leaf style
(180 MB parsed whole), ~130 MB as JSON (parsed by ``json``), and the costliest YAML below the
limits at ~185 MB; its allocator is told to return the document's memory when it is freed
(config.yaml_parser).
PyYAML's event stream still maps key paths to lines, only when a problem has to be reported
and only for files small enough. Values that came from ``${VAR}`` and credentials inside URLs
are never echoed in an error.
"""

from __future__ import annotations

__all__ = [
    "MAX_ALIAS_EVENTS",
    "MAX_ASSETS",
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "MAX_DEVICES",
    "MAX_KEYS",
    "MAX_NODES",
    "MAX_PARSE_MB",
    "MAX_PROBLEMS",
    "MAX_TAGS",
    "load_config",
    "load_yaml_model",
    "parse_config",
]

import contextlib
import functools
import gc
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson
import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from edge_agent.config.compact import compact_models
from edge_agent.config.model import AgentConfig, build_config_model
from edge_agent.config.redact import redact_urls
from edge_agent.config.shape import MAX_ASSETS, MAX_DEVICES, MAX_KEYS, MAX_TAGS, ShapeError, check_shape
from edge_agent.config.types import ITEMS_CHECKED, item_model
from edge_agent.config.yaml_parser import yaml_rs
from edge_agent.config.yaml_pieces import PieceError, estimate, parse_in_pieces
from edge_agent.errors import ConfigError, ConfigProblem

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
PathKey = tuple[str | int, ...]
_JSON_START = re.compile(r"\s*\{")

MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a 50,000-tag plant is 6 MB of YAML, 9 MB of indented JSON
#: Values, by an upper bound counted before parsing (_node_bound): a 50,000-tag plant is
#: ~730,000 as JSON and ~785,000 as YAML. The densest JSON at the limit peaks at ~170 MB; YAML
#: is held to MAX_PARSE_MB as well.
MAX_NODES = 850_000
#: Memory, in MB, that parsing a YAML file may take by the estimate of config.yaml_pieces (the
#: Python objects of the whole file and yaml-rs's document of its largest piece): a 50,000-tag
#: plant in block style is estimated at ~83 MB and takes ~65 MB. The costliest files below the
#: limit peak at ~185 MB in all, start-up (~85 MB) included (tests/test_config_limits.py).
MAX_PARSE_MB = 90
#: YAML events that aliases may replay: configs share a few small blocks, never more.
MAX_ALIAS_EVENTS = 100_000
#: Problems listed in one error; a file with more says how many more (a wrong key copied into
#: 50,000 tags must not print 50,000 lines, nor cost seconds to describe).
MAX_PROBLEMS = 50
_MAX_MESSAGE = 400
#: Above this many nodes a problem is reported by its key path alone: finding lines with PyYAML
#: costs ~5 µs and a dict entry a node, too much for a large file.
MAX_LINE_INDEX_NODES = 300_000
#: ... or above this many bytes of text (as Python holds it: 4 a character beyond U+FFFF): PyYAML
#: holds a scalar several times over (one 16 MB string took validate from 146 to 227 MB).
MAX_LINE_INDEX_BYTES = 4 * 2**20
MAX_DEPTH = 64
# libyaml's parser when present, for the line index of small files
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ALIASES = yaml_rs.AliasLimits(max_total_replayed_events=MAX_ALIAS_EVENTS, max_replay_stack_depth=MAX_DEPTH)
_YAML_RS_LINE = re.compile(r"at line (\d+)")


def _problem(file: str, message: str, line: int | None = None) -> ConfigError:
    return ConfigError(file, [ConfigProblem("", line, message)])


def _node_bound(text: str, *, json_: bool = False) -> int:
    """A bound on the values of a text before aliases, counted in C without parsing.

    In YAML every value but the first is opened by a line break or one of ``,:-[{?!`` (an
    implied null, as in ``{a}``, is not counted: config.yaml_pieces budgets its memory); in
    JSON by a comma, a colon or a '[' (line breaks there are only layout)."""
    if json_:
        return 1 + text.count(",") + text.count(":") + text.count("[")
    return sum(text.count(mark) for mark in "\n,:-[{?!") + 1


class _LineIndex:
    """The 1-based line of every key and list item, worked out only when a problem is reported:
    composing PyYAML's node tree costs ~10x the parse, which a 50,000-tag file would feel."""

    def __init__(self, text: str, *, parsed_as_json: bool = False) -> None:
        self._text = text
        self._lines: dict[PathKey, int] | None = None
        self.parsed_as_json = parsed_as_json  # by ``json``, not yaml-rs

    def get(self, path: PathKey) -> int | None:
        if self._lines is None:
            self._lines = {}
            small = sys.getsizeof(self._text) <= MAX_LINE_INDEX_BYTES
            if small and _node_bound(self._text) <= MAX_LINE_INDEX_NODES:
                self._lines = _key_lines(self._text)
        return self._lines.get(path)


def _key_lines(text: str) -> dict[PathKey, int]:
    """Each key path's line, from PyYAML's event stream (yaml-rs gives values only).

    Events, not the node tree: the tree holds ~600 bytes a node (130 MB for 1 MB of flow-style
    YAML), the stream one event at a time. Aliases are not followed: a path inside one falls
    back to the line of the alias.
    """
    lines: dict[PathKey, int] = {}
    # one frame per open container: [its path, is a mapping, current key or next index, a key is next]
    stack: list[list[Any]] = []
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                stack.pop()
                continue
            if not isinstance(event, yaml.NodeEvent):
                continue
            mark = event.start_mark
            line = mark.line + 1 if mark is not None else 0
            path: PathKey = ()
            if stack:
                frame = stack[-1]
                if frame[1] and frame[3]:  # a mapping key
                    frame[2] = event.value if isinstance(event, yaml.ScalarEvent) else "?"
                    frame[3] = False
                    path = (*frame[0], frame[2])
                    lines[path] = line
                    if isinstance(event, yaml.CollectionStartEvent):
                        stack.append([path, isinstance(event, yaml.MappingStartEvent), 0, True])
                    continue
                path = (*frame[0], frame[2])
                if frame[1]:
                    frame[3] = True
                else:
                    frame[2] += 1
            lines.setdefault(path, line)
            if isinstance(event, yaml.CollectionStartEvent):
                stack.append([path, isinstance(event, yaml.MappingStartEvent), 0, True])
    except (yaml.YAMLError, RecursionError, ValueError):
        pass  # the lines found so far; yaml-rs already decided whether the file is valid
    return lines


def _yaml_rs_problem(file: str, exc: ValueError) -> ConfigError:
    """yaml-rs's error (``... at line 3, column 1`` + the source line + the reason) in one line."""
    text = str(exc)
    found = _YAML_RS_LINE.search(text)
    parts = [ln.strip() for ln in text.splitlines() if ln.strip() and ln.lstrip()[:1] not in ("|", "^")]
    parts = [p for p in parts if not re.match(r"^\d+\s*\|", p)]
    reason = "; ".join(parts) or text
    if "replay" in reason and "limit" in reason:
        reason = (
            f"YAML aliases expand to more than {MAX_ALIAS_EVENTS} values; refusing it. "
            "Use fewer or smaller '*alias' references"
        )
    elif "duplicate mapping key" in reason:
        reason = (
            f"not valid YAML: {reason}; a key may appear once in a mapping: remove or merge the repeated one"
        )
    elif "recursion" in reason.lower() or "depth" in reason.lower():
        reason = f"YAML nested too deeply ({reason}); a config never nests that deep"
    else:
        reason = f"not valid YAML: {reason}"
    return _problem(file, reason, int(found.group(1)) if found else None)


def _compose(text: str, file: str) -> tuple[Any, _LineIndex]:
    """Parse the config within the limits; JSON by ``json``, anything else by yaml-rs."""
    if _JSON_START.match(text):  # JSON (a YAML subset), e.g. a generated config: 3x faster
        if _node_bound(text, json_=True) > MAX_NODES:
            raise _too_many(file)
        try:
            return json.loads(text), _LineIndex(text, parsed_as_json=True)
        except RecursionError:
            raise _problem(
                file, "nested too deeply (beyond Python's recursion limit); a config never nests that deep"
            ) from None
        except ValueError:
            pass  # YAML flow style, or broken: the YAML parser decides and reports
    try:
        data = _parse_yaml(text, file)
    except ValueError as exc:  # yaml_rs.YAMLDecodeError, or a value it cannot read
        raise _yaml_rs_problem(file, exc) from None
    except (RecursionError, TypeError, OverflowError, MemoryError) as exc:
        raise _problem(file, f"not valid YAML: {type(exc).__name__}: {exc}") from None
    if isinstance(data, list) and len(data) > 1 and re.search(r"^---", text, re.MULTILINE):
        raise _problem(file, "holds several YAML documents ('---'); a config file is one document")
    return data, _LineIndex(text)


def _parse_yaml(text: str, file: str) -> Any:
    """yaml-rs's value of the text, in pieces when it can be cut (config.yaml_pieces), refused
    before parsing when its estimated cost is over MAX_PARSE_MB."""
    load = functools.partial(yaml_rs.loads, alias_limits=_ALIASES, parse_datetime=True)
    cost = estimate(text, MAX_PARSE_MB * 2**20, load)
    if cost.values > MAX_NODES:
        raise _too_many(file)
    if cost.need > MAX_PARSE_MB * 2**20:
        raise _too_costly(file, cost.need)
    if cost.plan is None:
        return load(text)
    try:
        return parse_in_pieces(text, cost.plan, load)
    except PieceError as exc:  # the partial objects go with it: the whole file may need the room
        failed, from_parser = str(exc), exc.from_parser
    if cost.whole <= MAX_PARSE_MB * 2**20:
        return load(text)  # whole: its own error, or a value the pieces could not join
    if from_parser:
        raise ValueError(failed)
    raise _too_costly(file, cost.whole, f" (it cannot be read in pieces: {failed})")


def _too_costly(file: str, need: float, why: str = "") -> ConfigError:
    return _problem(
        file,
        f"reading this file would take about {need / 2**20:.0f} MB, more than the {MAX_PARSE_MB} MB "
        f"a config may take{why} (limit MAX_PARSE_MB; a 50,000-tag plant in block style takes about 82). "
        "Flow style ({...}, [...]) costs the most per value, block style the least: write large "
        "lists in block style, check that this is the config file, or split the plant over several agents",
    )


#: Text that may hold a float JSON has not (orjson writes NaN and ±inf as null): an exponent
#: of 3 digits (a cheap search first, names like "line100" pass the second), 300 digits in a
#: row; and .nan, .inf, !!float, found by plain substring search. The text is searched as UTF-8
#: (whose multi-byte characters hold no ASCII byte) with its digits all made '0' by
#: bytes.translate: a run of 300 is then a substring search, ~10× faster than sre trying
#: ``[0-9]{300}`` at every digit (0.1 s for a 50,000-tag plant).
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_EXPONENT = re.compile(rb"e[+-]?000")
_NUMBER_EXPONENT = re.compile(rb"[0.]e[+-]?000")
_LONG_NUMBER = b"0" * 300


def _maybe_not_finite(text: str) -> bool:
    """Called before parsing: its lowercase copy of the text then costs nothing at the peak."""
    low = text.lower().encode("utf-8", "surrogatepass").translate(_ZERO_DIGITS)
    if b".nan" in low or b".inf" in low or b"!!float" in low:
        return True
    if _EXPONENT.search(low) and _NUMBER_EXPONENT.search(low):
        return True
    return _LONG_NUMBER in low


def _as_json(data: Any, text: str, maybe_not_finite: bool | None = None) -> bytes | None:
    """The YAML tree as JSON when it holds only JSON values, for orjson to rebuild: its tree
    shares the keys and is built after the YAML one is freed. A 50,000-tag YAML otherwise left
    ~15 MB (0.3 kB a tag) more of its tree's memory behind; the round trip costs ~0.08 s. Dates,
    non-text keys, integers beyond 64 bits and anything that might be a non-finite float keep
    the YAML tree (None)."""
    if _maybe_not_finite(text) if maybe_not_finite is None else maybe_not_finite:
        return None
    try:
        return orjson.dumps(data, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except TypeError:  # orjson.JSONEncodeError: a value or key JSON has not
        return None


def _too_many(file: str) -> ConfigError:
    return _problem(
        file,
        f"the file holds more than {MAX_NODES} values (limit MAX_NODES; a 50,000-tag plant needs "
        "about 800,000). Check that this is the config file, or split the plant over several agents",
    )


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
    exc: ValidationError, data: Any, lines: _LineIndex, subs: _Substituted, shift: PathKey = ()
) -> list[ConfigProblem]:
    """The first MAX_PROBLEMS errors in plain words, then one line counting the rest.

    ``shift`` is where a chunk validated alone starts: its first key path part (the index in
    the chunk) is added to the last part of ``shift`` (the chunk's start)."""
    out = []
    errors = exc.errors(include_url=False)
    for err in errors[:MAX_PROBLEMS]:
        loc = tuple(err["loc"])
        if shift and loc and isinstance(loc[0], int) and isinstance(shift[-1], int):
            loc = (*shift[:-1], shift[-1] + loc[0], *loc[1:])
        path = _locate(data, loc)
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
        elif err["type"] == "extra_forbidden" and path[-1] == "<<":
            msg = "YAML merge keys ('<<: *anchor') are not supported (YAML 1.2); write the keys out"
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
        if len(msg) > _MAX_MESSAGE:  # e.g. a model validator listing 50,000 asset ids
            msg = msg[:_MAX_MESSAGE] + " …"
        out.append(ConfigProblem(_dotted(path), line, subs.redact(msg)))
    if len(errors) > MAX_PROBLEMS:
        out.append(_more(len(errors) - MAX_PROBLEMS))
    return out


_CHUNK = 100


def _validate_in_chunks(
    data: dict[Any, Any],
    model: type[AgentConfig],
    registry: dict[str, Any],
    lines: _LineIndex,
    subs: _Substituted,
) -> tuple[list[ConfigProblem], bool]:
    """Validate assets and each device's tags ``_CHUNK`` at a time, each raw item replaced by its
    model (the whole-file validation then takes it as is; a chunk with problems stays raw).

    Returns the problems and whether it stopped early, at MAX_PROBLEMS: 50,000 broken tags then
    cost a few chunks' errors, not 250,000, and raw items are freed as their models are built.
    """
    lists: list[tuple[PathKey, list[Any], Any]] = []
    if isinstance(data.get("assets"), list):
        lists.append((("assets",), data["assets"], item_model(model, "assets")))
    devices = data.get("devices")
    for i, dev in enumerate(
        devices if isinstance(devices, list) else ()
    ):  # 'devices: true' is the model's to report
        name = dev.get("driver") if isinstance(dev, dict) else None
        driver = registry.get(name) if isinstance(name, str) else None
        if driver is not None and isinstance(dev.get("tags"), list):
            lists.append((("devices", i, "tags"), dev["tags"], item_model(driver.config_model, "tags")))
    problems: list[ConfigProblem] = []
    for where, items, item_type in lists:
        if item_type is None:
            continue
        adapter = TypeAdapter(list[item_type])  # type: ignore[valid-type]
        for start in range(0, len(items), _CHUNK):
            try:
                built = adapter.validate_python(items[start : start + _CHUNK])
                items[start : start + _CHUNK] = compact_models(built)  # smaller: config.compact
            except ValidationError as exc:
                problems.extend(_problems(exc, data, lines, subs, shift=(*where, start)))
                if len(problems) >= MAX_PROBLEMS:
                    return problems, True
    return problems, False


def _all_tags_built(data: dict[Any, Any]) -> bool:
    devices = data.get("devices")
    return isinstance(devices, list) and all(
        isinstance(dev, dict)
        and isinstance(dev.get("tags", []), list)
        and all(isinstance(t, BaseModel) for t in dev.get("tags", []))
        for dev in devices
    )


def _more(n: int) -> ConfigProblem:
    return ConfigProblem("", None, f"... and {n} more problem(s); fix these first and validate again")


def _by_line(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    """Problems in file order, at most MAX_PROBLEMS of them, then the lines that count the rest."""
    tail = [p for p in problems if p.message.startswith("... ")]
    rest = sorted((p for p in problems if p not in tail), key=lambda p: p.line if p.line is not None else 0)
    more = sum(int(p.message.split()[2]) for p in tail if p.message.startswith("... and "))
    hidden = more + max(0, len(rest) - MAX_PROBLEMS)
    notes = [p for p in tail if not p.message.startswith("... and ")]
    return rest[:MAX_PROBLEMS] + ([_more(hidden)] if hidden else []) + notes


Command = Literal["run", "ingest"]


def parse_config(text: str, *, file: str = "<config>", command: Command = "run") -> AgentConfig:
    """Validate YAML text against the config model with the installed drivers.

    ``command="ingest"`` needs no ``assets``/``devices`` (ingest reads only mqtt, influxdb,
    buffer and agent).
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise _problem(file, _too_big(len(text.encode("utf-8", "surrogatepass"))))
    with _gc_paused():
        return _parse(text, file, command)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """A 50,000-tag plant is a million fresh containers and no cycles: the collector would walk
    them again and again, ~30 % of the load time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse(text: str, file: str, command: Command) -> AgentConfig:
    from edge_agent.plugins import driver_registry

    maybe_not_finite = _maybe_not_finite(text)
    data, lines = _compose(text, file)
    if not isinstance(data, dict):
        wanted = "'mqtt' and 'influxdb'" if command == "ingest" else "'assets' and 'devices'"
        raise _problem(file, f"expected a mapping with {wanted}", 1)
    try:
        check_shape(data)
    except ShapeError as exc:
        raise ConfigError(file, [ConfigProblem(_dotted(exc.path), lines.get(exc.path), str(exc))]) from None
    encoded = None if lines.parsed_as_json else _as_json(data, text, maybe_not_finite)
    if encoded is not None:  # the same tree, rebuilt by orjson once the YAML one is freed
        del data
        data = orjson.loads(encoded)
    if command == "ingest":
        data = {"assets": [], "devices": [], **data}
    problems: list[ConfigProblem] = []
    subs = _Substituted()
    if "${" in text:  # walking a 50,000-tag tree for nothing costs most of a second
        data = _substitute(data, (), problems, lines, subs)
    registry = driver_registry(_drivers_named(data))
    model = build_config_model([d.config_model for d in registry.values()])
    found, stopped = _validate_in_chunks(data, model, registry, lines, subs)
    problems.extend(found)
    if stopped:
        problems.append(ConfigProblem("", None, "... stopped here: the rest of the file is not checked yet"))
        raise ConfigError(file, _by_line(problems))
    try:
        # When every tag is a model built in its chunk, its own checks ran: pydantic need not
        # run them again. Raw tags (a chunk with problems, a plugin's tag type the chunks do
        # not know) are checked in full: device checks rely on them.
        checked = not found and _all_tags_built(data)
        config = model.model_validate(data, context={ITEMS_CHECKED: True} if checked else None)
    except ValidationError as exc:
        for problem in _problems(exc, data, lines, subs):  # items of a chunk with problems, again
            if problem not in problems:
                problems.append(problem)
        raise ConfigError(file, _by_line(problems)) from None
    except RecursionError:
        raise _problem(file, "config nested too deeply") from None
    if problems:
        raise ConfigError(file, _by_line(problems))
    config._env_refs = subs.written
    return config


def _drivers_named(data: dict[str, Any]) -> frozenset[str] | None:
    """The drivers the devices name, so only those are imported; None (all) when the devices
    are not a list of mappings with a driver name each (the validation then says what is wrong)."""
    devices = data.get("devices")
    if not isinstance(devices, list) or not devices:
        return None
    names = set()
    for dev in devices:
        if not isinstance(dev, dict) or not isinstance(dev.get("driver"), str):
            return None
        names.add(dev["driver"])
    return frozenset(names)


def _too_big(n: int) -> str:
    return (
        f"file is larger than the {MAX_CONFIG_BYTES // 1024} KiB a config may have ({n} bytes or more; "
        "limit MAX_CONFIG_BYTES, a 50,000-tag plant is about 6 MB). Check that this is the config "
        "file, or split the plant over several agents"
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
