"""YAML parsed in pieces (edge_agent.config.yaml_pieces) reads as the whole file does.

Pieces are made small here (PIECE_CHARS of 40-400 characters) so that small documents are cut
at every level; each result is compared with yaml-rs's parse of the whole text.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

import edge_agent.config.yaml_pieces as pieces
from edge_agent.config.loader import MAX_PARSE_MB, load_config, parse_config
from edge_agent.config.yaml_parser import yaml_rs
from edge_agent.errors import ConfigError


def _load(text: str) -> Any:
    return yaml_rs.loads(text, parse_datetime=True)


def _count(plan: pieces.Plan) -> int:
    if plan[0] == "piece":
        return 1
    if plan[0] == "item":
        return _count(plan[1])
    if plan[0] == "key":
        return _count(plan[4])
    return sum(_count(part) for part in plan[1])


def _in_pieces(text: str) -> tuple[Any, int]:
    planned = pieces.plan_pieces(text, _load)
    assert planned is not None, "not cut"
    return pieces.parse_in_pieces(text, planned[0], _load), _count(planned[0])


def _random_value(rng: random.Random, depth: int) -> Any:
    kind = rng.random()
    if depth > 4 or kind < 0.35:
        return rng.choice(
            [1, -2.5, "text", "a: b", "x#y", "", None, True, "2024-01-02", "multi\nline", "- dash"]
        )
    if kind < 0.65:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 6))]
    return {f"k{rng.randint(0, 99)}": _random_value(rng, depth + 1) for _ in range(rng.randint(0, 6))}


@pytest.mark.parametrize("seed", range(100))
def test_random_block_documents_read_as_whole(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    monkeypatch.setattr(pieces, "PIECE_CHARS", rng.choice([40, 120, 400]))
    doc = {f"top{i}": _random_value(rng, 0) for i in range(rng.randint(1, 8))}
    # PyYAML writes a mapping's list at the key's indentation, long strings over several lines
    text = yaml.safe_dump(doc, default_flow_style=False, indent=rng.choice([2, 4]), sort_keys=False)
    if rng.random() < 0.3:
        text = text.replace("\n", "\n# a comment line\n", 5)
    if len(text) <= pieces.PIECE_CHARS:
        return
    try:
        whole = _load(text)
    except ValueError:  # a comment line inside a quoted string: an error either way
        with pytest.raises(ValueError):
            _in_pieces(text)
        return
    assert _in_pieces(text)[0] == whole


HAND_WRITTEN = """\
# a config as people write it
agent:
  name: line-1   # trailing comment
  log_level: info
assets:
- id: a1
  states: {off_below_kw: 1.0, idle_below_kw: 10.0}
  tags: [x, y]
-
  id: a2
  note: |
    a block scalar
      kept as written: [not, a, list]
  other: >
    folded
    text
devices:
  - name: d1
    driver: modbus
    "quoted key": 'single ''quoted'''
    ? explicit key
    : explicit value
    tags:
      - - nested
        - list
      - name: t1
        address: 3
      -   name: t2
          address: 4
empty:
last: 0x1F
"""


@pytest.mark.parametrize("size", [20, 60, 150])
def test_hand_written_document_reads_as_whole(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pieces, "PIECE_CHARS", size)
    got, count = _in_pieces(HAND_WRITTEN)
    assert got == _load(HAND_WRITTEN)
    assert count > 3, "cut at several levels"


def test_crlf_lines_read_as_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pieces, "PIECE_CHARS", 60)
    text = HAND_WRITTEN.replace("\n", "\r\n")
    assert _in_pieces(text)[0] == _load(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\n"
        + "".join(f"k{i}: *x\n" for i in range(50)),  # an alias may name an anchor in another piece
        "%YAML 1.2\n---\n" + "".join(f"k{i}: {i}\n" for i in range(50)),
        "a: [" + ", ".join(str(i) for i in range(100)) + "]\n",  # one flow line
    ],
    ids=["aliases", "directive", "flow line"],
)
def test_what_cannot_be_cut_is_parsed_whole(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pieces, "PIECE_CHARS", 40)
    assert pieces.plan_pieces(text, _load) is None
    assert pieces.estimate(text, 1e9, _load).plan is None


def _big(monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    monkeypatch.setattr(pieces, "PIECE_CHARS", 200)
    return "assets: []\ndevices:\n" + body


def test_error_in_a_later_piece_names_its_line_in_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lines = "".join(f"  - name: d{i}\n    driver: modbus\n    host: h\n" for i in range(40))
    text = _big(monkeypatch, lines + "  - name: bad\n    host: [unclosed\n")
    bad_line = text.count("\n")  # the line after '[unclosed'
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    problem = err.value.problems[0]
    assert str(path) in str(err.value)
    assert "not valid YAML" in problem.message
    assert problem.line is not None and abs(problem.line - bad_line) <= 1, (problem.line, bad_line)


def test_key_repeated_across_pieces_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _big(monkeypatch, "".join(f"  - name: d{i}\n    driver: modbus\n    host: h\n" for i in range(40)))
    text += "".join(f"k{i}: {i}\n" for i in range(60)) + "devices: []\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, file="dup.yaml")
    assert "a key may appear once" in str(err.value)
    assert "'devices'" in str(err.value)


def test_a_plant_in_pieces_validates_as_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    tags = "".join(
        f"      - name: t{i}\n        asset: a1\n        address: {i}\n        role: generic\n"
        for i in range(200)
    )
    text = (
        "assets:\n  - id: a1\n    site: s\n    area: a\n    line: l\n    kind: machine\n"
        "    rated_power_kw: 30.0\n    ideal_cycle_time_s: 5.0\n"
        "devices:\n  - name: d1\n    driver: modbus\n    host: h\n    tags:\n" + tags
    )
    monkeypatch.setattr(pieces, "PIECE_CHARS", 500)
    assert _count(pieces.estimate(text, 1e9, _load).plan or ("piece",)) > 10
    cut = parse_config(text, file="p.yaml")
    monkeypatch.setattr(pieces, "PIECE_CHARS", 10**9)
    assert pieces.estimate(text, 1e9, _load).plan is None
    assert cut.model_dump() == parse_config(text, file="p.yaml").model_dump()


def test_dense_flow_style_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: [" + ",".join(["a:"] * 300_000) + "]\n")  # a one-pair mapping per comma
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and "MAX_PARSE_MB" in message and f"{MAX_PARSE_MB} MB" in message
    assert "block style" in message
