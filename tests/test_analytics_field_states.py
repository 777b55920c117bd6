"""PLC state codes in the field (issue #12): another PLC's convention through the config's
map, an unknown code Uncertain and logged once, and a compressor's load/unload tag that
cannot say "off" (its power can)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.analytics import AssetSpec, FixedWindow, StateThresholds, StreamingAnalytics
from edge_agent.analytics.state_codes import StateCodeMap
from edge_agent.batch import Quality

NS = 1_000_000_000
T0 = 1_700_006_400 * NS


def test_another_plcs_codes_map_and_an_unknown_code_is_uncertain_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = StateCodeMap("press-4", {"0": "off", "5": "idle", "2": "producing", "RUN": "producing", "9": "fault"})
    q = np.zeros(6, np.uint8)
    with caplog.at_level("WARNING", logger="edge_agent.analytics"):
        codes, quality = m.translate(np.array([0.0, 5.0, 2.0, 7.0, 9.0, 7.0]), q)
        codes2, _ = m.translate(np.array([7.0]), np.zeros(1, np.uint8))
    assert codes.tolist() == [0, 1, 3, -1, 4, -1] and codes2.tolist() == [-1]
    assert quality.tolist() == [0, 0, 0, Quality.UNCERTAIN, 0, Quality.UNCERTAIN]
    assert q.tolist() == [0] * 6  # the caller's array is not modified
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1 and "'press-4'" in logged[0] and "7.0" in logged[0] and "state_codes" in logged[0]
    strings, _ = m.translate(np.array(["RUN", "HALT"], dtype=object), np.zeros(2, np.uint8))
    assert strings.tolist() == [3, -1]
    default = StateCodeMap(
        "m", {str(i): n for i, n in enumerate(("off", "idle", "setup", "producing", "fault"))}
    )
    ints = np.array([0, 3], np.int64)
    assert default.translate(ints, np.zeros(2, np.uint8))[0] is ints  # the default: no work


def _compressor(min_dwell_s: float = 0.0) -> StreamingAnalytics:
    """A compressor with power and its load flag as state tag, one 1-min window."""
    return StreamingAnalytics(
        AssetSpec(
            asset="comp1",
            kind="compressor",
            rated_power_kw=30.0,
            thresholds=StateThresholds(off_below_kw=1.0, idle_below_kw=12.0, min_dwell_s=min_dwell_s),
            signals=frozenset({"power", "state"}),
            max_gap_s=5.0,
            windows=(FixedWindow("1min", 60),),
        )
    )


def test_a_compressor_that_draws_nothing_is_off_whatever_its_load_flag_says() -> None:
    sa = _compressor()
    t = T0 + np.arange(7, dtype=np.int64) * NS
    power = np.array([22.0, 22.0, 7.5, 7.5, 0.0, 0.0, 0.0])  # load, unload, then switched off
    flag = np.array([3.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # its load flag reads "unload" when off
    sig = {"power": power, "state": flag}
    w = (sa.update(t, sig, {k: np.zeros(7, np.uint8) for k in sig}) + sa.flush())[0].kpis
    assert w["time_off_s"] == pytest.approx(2.0, abs=0.51)
    assert w["time_idle_s"] + w["time_producing_s"] + w["time_off_s"] == pytest.approx(6.0)


@pytest.mark.parametrize("flag_on", [3.0, 1.0], ids=["starts-loaded", "starts-unloaded"])
def test_a_compressor_that_starts_is_not_off_while_its_power_state_debounces(flag_on: float) -> None:
    """Its debounced power state stays off for min_dwell_s after a start; the reading decides
    off, so none of what it draws once running is booked as off (seeds 8 and 13 of the
    end-to-end truth test booked 0.006-0.007 kWh as off where the truth has none)."""
    sa = _compressor(min_dwell_s=3.0)
    t = T0 + np.arange(8, dtype=np.int64) * NS
    on_kw = 22.0 if flag_on == 3.0 else 7.5
    power = np.array([0.0, 0.0, on_kw, on_kw, on_kw, on_kw, on_kw, on_kw])
    flag = np.array([1.0, 1.0, flag_on, flag_on, flag_on, flag_on, flag_on, flag_on])
    sig = {"power": power, "state": flag}
    w = (sa.update(t, sig, {k: np.zeros(8, np.uint8) for k in sig}) + sa.flush())[0].kpis
    running = "time_producing_s" if flag_on == 3.0 else "time_idle_s"
    assert w["energy_off_kwh"] == 0.0
    assert w["time_off_s"] == pytest.approx(1.5)  # off until halfway to the first reading that draws
    assert w[running] == pytest.approx(5.5)
    assert w["energy_kwh"] > 0
