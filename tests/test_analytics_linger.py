"""Rows held for a linger and booked in one update give exactly the KPIs of poll-by-poll booking."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from edge_agent.analytics.pending_rows import PendingRows
from edge_agent.batch import Quality, SampleBatch
from edge_agent.config import AgentConfig, parse_config
from edge_agent.runtime.analytics_stage import AnalyticsStage, KpiBatch
from edge_agent.runtime.routing import Router

S = 1_000_000_000
T0 = 1_700_000_000  # seconds


def _config(assets: int) -> str:
    tags = []
    for i in range(assets):
        a = f"m{i}"
        tags += [
            f"- {{name: {a}_kw, asset: {a}, role: power, unit: kW, address: {8 * i}, data_type: float32}}",
            f"- {{name: {a}_wh, asset: {a}, role: energy_counter, unit: kWh, scale: 0.001, "
            f"address: {8 * i + 2}, data_type: uint32}}",
            f"- {{name: {a}_parts, asset: {a}, role: part_counter, unit: parts, address: {8 * i + 4}, "
            "data_type: uint32}",
            f"- {{name: {a}_st, asset: {a}, role: state, unit: state, address: {8 * i + 6}, "
            "data_type: uint16}",
            f"- {{name: {a}_temp, asset: {a}, unit: degC, address: {1000 + i}, data_type: int16}}",
        ]
    assets_yaml = "\n".join(
        f"  - {{id: m{i}, site: s, area: a, line: l, rated_power_kw: 40}}" for i in range(assets)
    )
    return (
        textwrap.dedent(
            """\
            analytics: {kpi_interval: 60}
            assets:
            """
        )
        + assets_yaml
        + textwrap.dedent(
            """
            devices:
              - name: plc
                driver: modbus
                host: 127.0.0.1
                poll_interval: 1s
                tags:
            """
        )
        + "\n".join("      " + t for t in tags)
        + "\n"
    )


def _polls(assets: int, seconds: int, seed: int = 5) -> list[SampleBatch]:
    """A device polled every second: states cycle, counters count, one failed poll (Bad row)."""
    rng = np.random.default_rng(seed)
    wh = np.full(assets, 1000, np.int64)
    parts = np.zeros(assets, np.int64)
    out = []
    for k in range(seconds):
        t = (T0 + k) * S
        if k == 200:
            out.append(
                SampleBatch.bad(
                    "plc",
                    t,
                    [f"m{i}_{s}" for i in range(assets) for s in ("kw", "wh", "parts", "st", "temp")],
                )
            )
            continue
        values: dict[str, float | int] = {}
        for i in range(assets):
            st = (0, 1, 3)[((k + 17 * i) // 40) % 3]
            kw = (0.2, 6.0, 0.0, 30.0)[st] + rng.normal(0, 0.2)
            wh[i] += round(kw / 3.6)
            parts[i] += st == 3 and k % 7 == 0
            values |= {f"m{i}_kw": kw, f"m{i}_wh": int(wh[i]), f"m{i}_parts": int(parts[i])}
            values |= {f"m{i}_st": st, f"m{i}_temp": 20.0 + i}
        batch = SampleBatch.single("plc", t, values)
        counters = {
            n: np.asarray(v, np.int64) for n, v in batch.values.items() if n.endswith(("_wh", "_parts"))
        }
        out.append(SampleBatch("plc", batch.ts, batch.values | counters, batch.quality))
    return out


def _held(config: AgentConfig) -> AnalyticsStage:
    """Rows held for one live KPI window (analytics.hold_rows at its largest)."""
    return AnalyticsStage(config, linger_s=config.analytics.kpi_interval)


def _run(stage: AnalyticsStage, router: Router, polls: list[SampleBatch]) -> list[KpiBatch]:
    out: list[KpiBatch] = []
    for b in polls:
        for route, part in router.split(b):
            out.extend(stage.update(route, part))
    return out + list(stage.flush())


def _by_key(kpis: list[KpiBatch]) -> dict[tuple[str, str, int], dict[str, float]]:
    """Last report of each window (a window flushed early is reported again, complete)."""
    return {
        (k.asset.id, k.window, int(k.batch.ts[0])): {n: float(v[0]) for n, v in k.batch.values.items()}
        for k in kpis
    }


def test_linger_books_the_same_kpis_and_totals_as_poll_by_poll() -> None:
    config = parse_config(_config(3))
    polls = _polls(3, 900)
    router = Router(config)
    held, direct = _held(config), AnalyticsStage(config, linger_s=0)
    got, want = _by_key(_run(held, router, polls)), _by_key(_run(direct, router, polls))
    assert got.keys() == want.keys()
    assert len({w for _, w, _ in got}) == 6  # every window scheme reported
    for key, kpis in want.items():
        np.testing.assert_allclose(list(got[key].values()), list(kpis.values()), rtol=1e-9, equal_nan=True)
        assert got[key].keys() == kpis.keys(), key
    for asset in ("m0", "m1", "m2"):
        a, b = held.totals()[asset], direct.totals()[asset]
        assert a.raw_counts == b.raw_counts and a.raw_counts["part_counter"] > 0
        assert a.energy_kwh == b.energy_kwh > 0
        assert a.gaps == b.gaps


def test_totals_book_held_rows_and_their_windows_are_not_lost() -> None:
    config = parse_config(_config(1))
    router = Router(config)
    stage, direct = _held(config), AnalyticsStage(config, linger_s=0)
    out: list[KpiBatch] = []
    want: list[KpiBatch] = []
    for k, b in enumerate(_polls(1, 300)):
        for route, part in router.split(b):
            out.extend(stage.update(route, part))
            want.extend(direct.update(route, part))
        if k % 45 == 44:  # a live table asks for totals in the middle of a slot
            assert stage.totals()["m0"].raw_counts == direct.totals()["m0"].raw_counts
    got, exp = _by_key(out + list(stage.flush())), _by_key(want + list(direct.flush()))
    assert got.keys() == exp.keys()
    for key, kpis in exp.items():
        np.testing.assert_allclose(list(got[key].values()), list(kpis.values()), rtol=1e-9, equal_nan=True)


def test_assets_flush_staggered_once_per_linger() -> None:
    linger = 60 * S
    bufs = [
        PendingRows(f"a{i}", {"power": np.dtype(np.float64)}, linger, offset_ns=linger * i // 4)
        for i in range(4)
    ]
    flushed: dict[int, list[int]] = {i: [] for i in range(4)}
    q = np.zeros(1, np.uint8)
    for k in range(600):
        ts = np.array([(T0 + k) * S])
        for i, b in enumerate(bufs):
            if b.append(ts, {"power": np.array([1.0])}, {"power": q}):
                rows = b.take()
                assert rows is not None
                flushed[i].append(rows[0].size)
    firsts = set()
    for i, sizes in flushed.items():
        assert all(s == 60 for s in sizes[1:-1]), (i, sizes)  # one linger of 1-s rows per update
        firsts.add(sizes[0])
    assert len(firsts) == 4  # each asset's first slot ends at a different time


def test_a_bad_row_of_a_counter_is_held_and_a_float_counter_is_refused() -> None:
    buf = PendingRows("press-1", {"energy_counter": np.dtype(np.int64)}, 60 * S)
    bad = np.array([Quality.BAD], np.uint8)
    buf.append(np.array([T0 * S]), {"energy_counter": np.array([np.nan])}, {"energy_counter": bad})
    good = np.array([Quality.GOOD], np.uint8)
    with pytest.raises(ValueError, match=r"press-1.*energy_counter.*raw integers"):
        buf.append(np.array([(T0 + 1) * S]), {"energy_counter": np.array([5.0])}, {"energy_counter": good})
    rows = buf.take()
    assert rows is not None and rows[0].size == 1  # the refused row stored nothing
    assert rows[2]["energy_counter"].tolist() == [Quality.BAD]
    with pytest.raises(ValueError, match=r"press-1.*'power' is not configured"):
        buf.append(np.array([T0 * S]), {"power": np.array([1.0])}, {"power": good})


def test_one_assets_failing_analytics_does_not_stop_the_others_at_flush(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = parse_config(_config(2))
    router = Router(config)
    stage = _held(config)
    first, *rest = _polls(2, 30)
    for route, part in router.split(first):
        assert stage.update(route, part) == []  # an asset's first rows are booked at once
    for b in rest:
        wh = b.values["m0_wh"]
        broken = SampleBatch(b.device, b.ts, b.values | {"m0_wh": np.full_like(wh, -5)}, b.quality)
        for route, part in router.split(broken):
            assert stage.update(route, part) == []  # held, not booked yet
    out = list(stage.flush())
    m1 = [k for k in out if k.asset.id == "m1"]
    assert m1 and {k.window for k in m1} >= {"60s", "15min", "1h"}  # m0 failing spared m1
    assert "'m0'" in caplog.text and "negative counter reading" in caplog.text


def test_windows_closed_by_totals_every_second_still_go_out_on_time() -> None:
    """The status page asks for totals every second: the windows that closes go out with the
    next update, not only at shutdown (the live KPI topic stayed silent before)."""
    config = parse_config(_config(1))
    router = Router(config)
    stage, direct = _held(config), AnalyticsStage(config, linger_s=0)
    out: list[KpiBatch] = []
    want: list[KpiBatch] = []
    for b in _polls(1, 300):
        for route, part in router.split(b):
            out.extend(stage.update(route, part))
            want.extend(direct.update(route, part))
        stage.totals()
    live = f"{round(config.analytics.kpi_interval)}s"
    assert [k.window for k in out].count(live) >= [k.window for k in want].count(live) - 1 > 0
    assert _by_key(out + list(stage.flush())).keys() == _by_key(want + list(direct.flush())).keys()


@pytest.mark.parametrize(("seed", "budget"), [(1, 0), (2, 1), (3, 3), (4, 4), (5, 5), (6, 3)])
def test_first_rows_are_booked_at_once_only_up_to_a_budget_per_second(
    monkeypatch: pytest.MonkeyPatch, seed: int, budget: int
) -> None:
    """A small plant shows every asset's state right after a start; a large one books at most
    FIRST_BOOKINGS_PER_S assets' first rows per second (booking 5,000 at once held the first
    data back by seconds), the others at their slot — and nothing booked early or late differs."""
    import edge_agent.runtime.analytics_stage as stage_module

    monkeypatch.setattr(stage_module, "FIRST_BOOKINGS_PER_S", budget)
    config = parse_config(_config(5))
    router = Router(config)
    stage, direct = _held(config), AnalyticsStage(config, linger_s=0)
    polls = _polls(5, 300, seed)
    for route, part in router.split(polls[0]):
        stage.update(route, part)
        direct.update(route, part)
    booked = {a for a, t in stage.totals(held=False).items() if t.last_ts_ns is not None}
    assert len(booked) == budget, booked
    got, want = _by_key(_run(stage, router, polls[1:])), _by_key(_run(direct, router, polls[1:]))
    assert got.keys() == want.keys()
    for key, kpis in want.items():
        np.testing.assert_allclose(list(got[key].values()), list(kpis.values()), rtol=1e-9, equal_nan=True)


# A PendingRows saved by the previous version (per-poll chunks: two Good rows, then a poll with
# an Uncertain power and a text state, then a lone counter row), as zlib+base64 of its pickle.
_SAVED_BY_CHUNKS = (
    "eNp9Uk1rFEEQndnZccmHmmDQHAy4CGEFHQh4EFQUAkYcGGXBY2hmZ3u2B2d7hv4wLESiYLJG+pbSu/ec/AP+HX9CQEFrPlxng1iH"
    "fl1U16tXj37rfrrtWGWYLh2OKAlHlCsv5GE6UUkkvZzyYcJHRGR7EszSiyrtF9kJ3HoHwRvomQ6JmOavJOyCucL1OJ94JMoE9fBO"
    "RRJhI4lFNh7oOKYCG3ufb1h1fH/99FqBX1ffl7h/+q3EJzs/CgTjloSIQzXJKTabVnIPjj9MoQ893zH2AwiC4NkvjPLwLQUDv30I"
    "xt4GhY8KhZcop2I0QVWaK5TAFv5KWKxx2ZqPyzUCWyno2FpBZtw82ztHUMXa4wrXa7xe49kBsIumFTc0s9V/K/4zQqpQUTBXm1aO"
    "daqSUIgQrVgmgkYZl0roSKEjbMl0+LAqnoBvHcK2PYBqmF0So4Dnc6btnzPtEUo43oXezsFZJXt2MU7/ZQCzlOJDjZay9cKC9mx9"
    "xyqn6K3Gmnf/tybbmCewHWAPG+XNZtlxrPmynkKI/678ExIqPStI2cW+rjYtwsFvm0WSxbGkinAJH13r6P4X27hEppkCNMENJdbA"
    "dHJBpbyzBWYhxc9NRf389ObPC8YVWYoTkH6DbU5BH8HA+w2uiBOz"
)


def test_rows_saved_by_the_previous_version_are_booked_as_they_were() -> None:
    import base64
    import pickle
    import zlib

    buf = pickle.loads(zlib.decompress(base64.b64decode("".join(_SAVED_BY_CHUNKS))))
    assert isinstance(buf, PendingRows) and len(buf) == 4
    rows = buf.take()
    assert rows is not None
    ts, values, quality = rows
    assert (ts // S).tolist() == [100, 101, 102, 103]
    assert values["energy_counter"].dtype == np.int64
    assert values["energy_counter"].tolist() == [10, 12, 0, 15]
    assert quality["energy_counter"].tolist() == [Quality.GOOD, Quality.GOOD, Quality.MISSING, Quality.GOOD]
    np.testing.assert_array_equal(values["power"], [5.0, 6.0, 7.0, np.nan])
    assert quality["power"].tolist() == [Quality.GOOD, Quality.GOOD, Quality.UNCERTAIN, Quality.MISSING]
    assert values["state"][2] == "RUN" and quality["state"].tolist()[2] == Quality.GOOD
    assert [q for i, q in enumerate(quality["state"].tolist()) if i != 2] == [Quality.MISSING] * 3
    # its slot carried over: 30-s slots shifted by 7 s, the first from 97 s; 127 s ends it
    assert not buf.append(np.array([126 * S]), {"power": np.array([1.0])}, {"power": np.zeros(1, np.uint8)})
    assert buf.append(np.array([128 * S]), {"power": np.array([1.0])}, {"power": np.zeros(1, np.uint8)})


# Value dtypes a poll may bring for a column of each dtype (a driver decodes registers as it
# is told: a 32-bit counter as uint32, a float32 power, a 16-bit state word).
_VALUE_DTYPES: dict[str, list[type[np.generic]]] = {
    "i": [np.int64, np.uint32, np.uint16, np.int32],
    "u": [np.uint64, np.uint32, np.int64],
    "f": [np.float64, np.float32, np.int16, np.uint16],
}


def test_held_rows_survive_growth_text_states_and_a_save_midway() -> None:
    """Rows go into preallocated columns that grow; whatever the split, the value dtypes (one
    row with every role takes scalar stores, the rest array copies), text states, and a save
    and a load in the middle, take() gives every row back exactly as it came."""
    import pickle

    rng = np.random.default_rng(7)
    dtypes = {"energy_counter": np.dtype(np.int64), "part_counter": np.dtype(np.uint64)}
    dtypes |= {"power": np.dtype(np.float64), "state": np.dtype(np.float64)}
    for trial in range(40):
        buf = PendingRows("m1", dtypes, 0)
        want_ts: list[int] = []
        want: dict[str, list[object]] = {r: [] for r in dtypes}
        want_q: dict[str, list[int]] = {r: [] for r in dtypes}
        t = T0 * S
        for poll in range(int(rng.integers(1, 60))):
            k = 1 if rng.random() < 0.5 else int(rng.integers(1, 5))
            ts = t + np.arange(k, dtype=np.int64) * S
            t += k * S
            present = list(dtypes) if rng.random() < 0.5 else [r for r in dtypes if rng.random() < 0.7]
            sig: dict[str, np.ndarray] = {}
            q: dict[str, np.ndarray] = {}
            for r in present:
                qual = rng.choice([Quality.GOOD, Quality.UNCERTAIN, Quality.BAD], k).astype(np.uint8)
                choices = _VALUE_DTYPES[dtypes[r].kind]
                vtype = np.dtype(choices[int(rng.integers(len(choices)))])
                if r == "state" and rng.random() < 0.3:
                    v: np.ndarray = np.array(rng.choice(["RUN", "IDLE"], k))
                elif dtypes[r].kind in "iu" and rng.random() < 0.1:  # a Bad counter read as NaN
                    v, qual = np.full(k, np.nan), np.full(k, Quality.BAD, np.uint8)
                elif vtype.kind in "iu":
                    top = 2**64 - 1 if vtype == np.uint64 else int(np.iinfo(vtype).max)
                    v = rng.integers(0, top, k, dtype=vtype, endpoint=True)
                else:
                    v = rng.normal(scale=1e3, size=k).astype(vtype)
                sig[r], q[r] = v, qual
            buf.append(ts, sig, q)
            want_ts += ts.tolist()
            for r in dtypes:
                if r not in sig:
                    want[r] += [None] * k
                elif sig[r].dtype.kind == "f" and dtypes[r].kind in "iu":
                    want[r] += [0] * k  # never read: the row is Bad
                else:
                    want[r] += sig[r].tolist()
                want_q[r] += q[r].tolist() if r in q else [Quality.MISSING] * k
            if poll == trial:  # a save and a restart in the middle of the slot
                buf = pickle.loads(pickle.dumps(buf, protocol=pickle.HIGHEST_PROTOCOL))
        rows = buf.take()
        assert rows is not None and buf.take() is None and len(buf) == 0
        ts_got, values, quality = rows
        assert ts_got.tolist() == want_ts
        for r in dtypes:
            assert quality[r].tolist() == want_q[r], r
            got = values[r].tolist()
            for g, w in zip(got, want[r], strict=True):
                if w is None:  # MISSING: 0 for counters, NaN otherwise
                    assert g == 0 if dtypes[r].kind in "iu" else g != g, (r, g)
                else:
                    assert g == w, (r, g, w)
            if dtypes[r].kind in "iu":
                assert values[r].dtype == dtypes[r]


def test_totals_without_booking_are_computed_once_per_booking() -> None:
    """The status page asks every second: an asset not booked yet (no data, a device down) has
    its totals computed once, not on every call; once booked, its figures are the new ones."""
    config = parse_config(_config(3))
    router = Router(config)
    stage = _held(config)
    polls = _polls(3, 130)
    parts = dict((route.asset.id, (route, part)) for route, part in router.split(polls[0]))
    stage.update(*parts["m0"])  # m0's first rows are booked at once; m1 and m2 have none
    first = stage.totals(held=False)
    assert first["m0"].last_ts_ns == polls[0].ts[0] and first["m1"].last_ts_ns is None
    again = stage.totals(held=False)
    assert all(again[a] is first[a] for a in ("m0", "m1", "m2"))  # nothing booked: the same objects
    for b in polls[1:]:  # m1 gets rows for over a live window: booked at its slot; m2 never
        for route, part in router.split(b):
            if route.asset.id == "m1":
                stage.update(route, part)
    after = stage.totals(held=False)
    assert after["m1"].last_ts_ns is not None and after["m1"].energy_kwh > 0
    assert after["m2"] is first["m2"] and after["m0"] is first["m0"]
