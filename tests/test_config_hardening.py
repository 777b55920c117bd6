"""Hostile config files: oversized, alias bombs, binary, non-UTF-8, secrets in the wrong place.

Every input gives exit 0 or 2 from `edge-agent validate`, never a traceback, quickly and in
bounded memory, and no secret (``${VAR}`` value or URL password) appears in any output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_config import GOOD

from edge_agent.cli import main
from edge_agent.config.loader import MAX_CONFIG_BYTES

SECRET = "hunter2-Sup3r-secret"
ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def _validate(path: Path, *extra: str) -> int:
    return main(["validate", str(path), *extra])


def _run(capsys: pytest.CaptureFixture[str], path: Path, *extra: str) -> tuple[int, str]:
    code = _validate(path, *extra)
    out = capsys.readouterr()
    return code, out.out + out.err


def test_oversized_file_is_refused_at_once_without_reading_it_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.yaml"
    filler = "x" * (MAX_CONFIG_BYTES + 10 * 2**20)
    big.write_text("assets: []\ndevices: []\n# " + filler + "\n", encoding="utf-8")
    tracemalloc.start()
    t0 = time.monotonic()
    code, out = _run(capsys, big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert code == 2 and f"larger than the {MAX_CONFIG_BYTES // 1024} KiB" in " ".join(out.split())
    assert time.monotonic() - t0 < 2 and peak < MAX_CONFIG_BYTES + 4 * 2**20  # one read, capped


def test_alias_bomb_is_refused_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert len(ALIAS_BOMB) < 400
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB, encoding="utf-8")
    t0 = time.monotonic()
    code, out = _run(capsys, bomb)
    assert code == 2 and "aliases" in out
    assert time.monotonic() - t0 < 2


def test_small_aliases_still_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_TEST_MQTT_PASSWORD", "x")
    doc = GOOD.replace("    site: plant\n", "    site: &site plant\n")
    doc = doc.replace("    area: machining\n", "    area: *site\n")
    assert "*site" in doc
    path = tmp_path / "ok.yaml"
    path.write_text(doc, encoding="utf-8")
    assert _validate(path) == 0


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (bytes(range(256)) * 4, "binary file"),
        ("assets: []\ndevices: []\nagent: {name: M\u00fcller}\n".encode("latin-1"), "not UTF-8"),
        (b"\x89PNG\r\n\x1a\n" + os.urandom(64).replace(b"\x00", b"\x01"), "not UTF-8"),
    ],
)
def test_binary_or_non_utf8_file_is_a_plain_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, says: str
) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_bytes(content)
    code, out = _run(capsys, path)
    assert code == 2 and says in out and "Traceback" not in out


@pytest.mark.parametrize(
    "snippet",
    [
        "mqtt: {port: '${EDGE_HARDEN_SECRET}'}",  # int field: pydantic would echo the input
        "agent: {name: '${EDGE_HARDEN_SECRET}!'}",  # pattern field
        "mqtt: {topic_template: 'x/${EDGE_HARDEN_SECRET}/{bad}'}",  # a validator quoting the value
        "influxdb: {url: 'http://admin:${EDGE_HARDEN_SECRET}@db:8086', api: v1}",  # missing database
        "influxdb: {url: 'http://a:b@db', database: x, timeout: 'http://admin:pw-in-url@db:8086'}",
    ],
)
def test_secrets_are_never_echoed_in_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, snippet: str
) -> None:
    monkeypatch.setenv("EDGE_HARDEN_SECRET", SECRET)
    path = tmp_path / "cfg.yaml"
    path.write_text(f"assets: []\ndevices: []\n{snippet}\n", encoding="utf-8")
    code, out = _run(capsys, path)
    assert code == 2, out
    assert SECRET not in out and "pw-in-url" not in out and "problem" in out


def test_dump_masks_url_credentials_and_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_HARDEN_SECRET", SECRET)
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "assets: []\ndevices: []\n"
        "mqtt: {host: 127.0.0.1, password: '${EDGE_HARDEN_SECRET}'}\n"
        "influxdb: {url: 'https://admin:${EDGE_HARDEN_SECRET}@db.example:8086/', database: edge_agent}\n",
        encoding="utf-8",
    )
    code, out = _run(capsys, path, "--dump")
    assert code == 0, out
    assert SECRET not in out
    assert "https://***@db.example:8086/" in out


def test_densest_file_under_the_limit_stays_within_2s_cpu_and_200mb(tmp_path: Path) -> None:
    """Worst case for the parser: the most nodes per byte, just under the size limit, in a fresh process."""
    dense = tmp_path / "dense.yaml"
    dense.write_text("a: [" + ",".join(["1"] * ((MAX_CONFIG_BYTES - 10) // 2)) + "]\n", encoding="utf-8")
    probe = (
        "import resource, sys, time\n"
        "from edge_agent.cli import main\n"
        "r0 = resource.getrusage(resource.RUSAGE_SELF)\n"
        f"code = main(['validate', {str(dense)!r}])\n"
        "r1 = resource.getrusage(resource.RUSAGE_SELF)\n"
        # VmHWM, not ru_maxrss: ru_maxrss survives exec, so it reports the forking pytest's size
        "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "print('RESULT', code, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, hwm)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    code, cpu, maxrss_kb = out.stdout.split("RESULT")[-1].split()
    assert int(code) == 2  # more values than a config may have
    assert float(cpu) < 2.0, cpu
    assert int(maxrss_kb) < 200 * 1024, maxrss_kb


# -- fuzz ----------------------------------------------------------------------------------------
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(
        ["${EDGE_HARDEN_SECRET}", "http://u:${EDGE_HARDEN_SECRET}@h", "${NOT_SET_ANYWHERE}", "1d"]
    ),
)
KEYS = st.one_of(
    st.sampled_from(
        [
            "assets",
            "devices",
            "agent",
            "mqtt",
            "influxdb",
            "buffer",
            "analytics",
            "name",
            "driver",
            "tags",
            "host",
            "port",
            "url",
            "database",
            "id",
            "site",
            "password",
            "<<",
        ]
    ),
    st.text(max_size=8),
)
TREES = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=4),
    max_leaves=30,
)
YAML_NOISE = st.sampled_from(
    [
        "&a ",
        "*a",
        "<<: *a",
        "!!python/object:os.system",
        "%YAML 1.1",
        "---",
        "...",
        "{",
        "[",
        ": ",
        "- ",
        "\t",
        "\x00",
        "\ufeff",
        "? ",
        "|",
        ">",
        "!!binary",
        "'",
        '"',
    ]
)


@st.composite
def hostile_texts(draw: st.DrawFn) -> bytes:
    base = yaml.safe_dump(draw(TREES), allow_unicode=True)
    pieces = draw(st.lists(st.tuples(st.integers(0, len(base)), YAML_NOISE), max_size=4))
    for pos, noise in sorted(pieces, reverse=True):
        base = base[:pos] + noise + base[pos:]
    raw = base.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]  # truncated mid-character sometimes
    return raw


@settings(max_examples=250, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(hostile_texts(), st.binary(max_size=200)))
def test_fuzz_every_input_exits_0_or_2_without_traceback_or_secret(raw: bytes) -> None:
    os.environ["EDGE_HARDEN_SECRET"] = SECRET
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cfg.yaml"
        path.write_bytes(raw)
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = _validate(path, "--dump")
    assert code in (0, 2)
    assert SECRET not in buf.getvalue()


def test_influx_errors_never_show_url_credentials() -> None:
    from edge_agent.broker import free_port
    from edge_agent.config import InfluxConfig
    from edge_agent.delivery.influx import V1Writer
    from edge_agent.errors import TransientSinkError

    cfg = InfluxConfig(url=f"http://admin:pw-in-url@127.0.0.1:{free_port()}", database="x", timeout=1)
    writer = V1Writer(cfg)
    try:
        with pytest.raises(TransientSinkError) as info:
            writer.write(b"m f=1 1\n")  # nothing listens there: connection refused
    finally:
        writer.close()
    assert "pw-in-url" not in str(info.value) and "***@127.0.0.1" in str(info.value)


def test_dump_shows_env_references_not_their_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_HARDEN_SECRET", SECRET)
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "assets: []\ndevices: []\nmqtt: {host: 127.0.0.1, username: '${EDGE_HARDEN_SECRET}'}\n",
        encoding="utf-8",
    )
    code, out = _run(capsys, path, "--dump")
    assert code == 0 and SECRET not in out and "${EDGE_HARDEN_SECRET}" in out
