"""Where inside a sampling interval a machine changed state, and whose energy the interval is.

States are observed at samples, so a change from s₀ (at t₀) to s₁ (at t₁) is only known to lie
somewhere in (t₀, t₁]. Booking the whole interval to either side misattributes up to ΔP·Δt per
change — several percent of a state's energy when states last a few dozen polls. The interval's
energy ΔE (counter increment, or the trapezoid of power) pins the change down.

Model: the asset drew P₀ (the old state's last reading) for a fraction φ of the interval, then P₁:

    P₀·φ·D + P₁·(1 − φ)·D = ΔE   ⇒   φ = (ΔE − P₁·D) / ((P₀ − P₁)·D),   φ ∈ [0, 1],

where D is the time the energy was drawn over — Δt when the sample stamps are the instants the
readings describe. The change falls at t₀ + φ·Δt, which splits the interval's *time* (so APT,
PBT and availability agree with the energy), and the old state gets the share P₀φ / (P₀φ +
P₁(1 − φ)) of ΔE: the model's two parts scaled to what the meter counted, so the split never
changes the interval's total and a reading error is shared, not dumped on one side.

Stamps are rarely that exact. A device refreshes its registers on its own cycle, so a sample
describes an instant somewhat before its stamp, and a counter is floored to whole counts: the
energy of an interval covers a device time D = ρ·Δt with ρ scattered around 1. The solution
amplifies that scatter by P₁/|P₀ − P₁|, and it is biased, because a change is more likely to
fall into an interval that covers more device time (length-biased sampling). Both errors
belong to a *sample* — its time offset, its rounding — and each sample bounds two intervals,
with opposite signs, so the relative residual x = ΔE/(P̄Δt) − 1 of one interval predicts the
next one's. The estimator learns that from the intervals without a change (:class:`TimeBase`:
a weighted regression x_k ≈ a·x_{k−1} and its residual scatter σ), then for a change interval
whose predecessor had a residual x₋ expects ρ = 1 + a·x₋ (else 1, with the unconditional
scatter). Length-biased, the device time of the change interval is D = Δt·(ρ + σ²/ρ), kept
within ½–2 Δt, and φ is the posterior mean under a uniform prior: a normal with centre
(ΔE − P₁D)/((P₀ − P₁)D) and spread √((σΔE)² + q²/6)/|(P₀ − P₁)D| (q: one count; two floors:
variance q²/6), truncated to [0, 1].
With exact stamps (σ → 0, ρ = 1) that is the clipped solution above, to the counter's
resolution; with meaningless energy (σ → ∞) it is ½, the energy-time midpoint.

* For the trapezoid (power-only assets) the solution is always φ = ½: each state gets its own
  power over half the interval, E₀ = P₀·Δt/2.
* When P₀ and P₁ are too close for ΔE to tell — their difference over Δt is within one count of
  the counter — or a reading is missing (Bad, NaN, not configured, or an interval average that
  is not a reading at an instant), φ = ½, and without both readings E₀ = ΔE·φ.
* A debounced state (``min_dwell_s``) changes by definition when its timer expires, at the level
  run's start + dwell; then φ is that instant, not an estimate.

The streaming path calls this; the plain-Python test oracle derives the same definition on
its own.
"""

from __future__ import annotations

__all__ = ["NO_SWITCH", "TimeBase", "split_interval", "time_base_at", "time_base_terms"]

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .normal_tails import erfcx, ndtr

_I64 = npt.NDArray[np.int64]
_F64 = npt.NDArray[np.float64]

NO_SWITCH = -1
"""``switch_ns`` sentinel: the change instant is unknown and has to be estimated."""


@dataclass(frozen=True, slots=True)
class TimeBase:
    """What the intervals without a change taught about the energy equation's time base.

    Weighted sums over consecutive pairs (x₋, x) of relative residuals x = ΔE/(P̄Δt) − 1,
    weight P̄Δt of both: ``sxx`` = Σw·x₋², ``sxy`` = Σw·x₋·x, ``syy`` = Σw·x², ``sw`` = Σw; and
    the last interval's residual and P̄Δt (NaN: it is no evidence), where the next pair starts.
    """

    sxx: float = 0.0
    sxy: float = 0.0
    syy: float = 0.0
    sw: float = 0.0
    last_x: float = float("nan")
    last_e: float = float("nan")


def time_base_terms(
    energy_kws: _F64, trap_kws: _F64, steady: npt.NDArray[np.bool_], resolution_kws: float, tb: TimeBase
) -> tuple[_F64, _F64, _F64, _F64, _F64, _F64]:
    """Per interval: the four pair terms (pair = the interval and the one before), x, and the
    predecessor's x. Evidence only from intervals without a change that drew more than one
    count (smaller ones are all rounding)."""
    ok = steady & (trap_kws > resolution_kws)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.where(ok, energy_kws / trap_kws - 1.0, np.nan)
    xp = np.concatenate(([tb.last_x], x[:-1]))
    ep = np.concatenate(([tb.last_e], trap_kws[:-1]))
    pair = np.isfinite(xp) & np.isfinite(x)
    w = np.where(pair, ep * trap_kws, 0.0)
    xp0 = np.where(pair, xp, 0.0)
    x0 = np.where(pair, x, 0.0)
    return w * xp0 * xp0, w * xp0 * x0, w * x0 * x0, w, x, xp


def time_base_at(sxx: _F64, sxy: _F64, syy: _F64, sw: _F64, x_before: _F64) -> tuple[_F64, _F64]:
    """Expected ρ and its scatter σ for change intervals, from the sums gathered before each
    and the residual of the interval just before it (NaN: none)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(sxx > 0, np.clip(sxy / np.where(sxx > 0, sxx, 1.0), -1.0, 1.0), 0.0)
        have = np.isfinite(x_before) & (sw > 0)
        var = np.where(have, np.maximum(syy - a * sxy, 0.0), syy) / np.where(sw > 0, sw, 1.0)
        rho = np.where(have, np.clip(1.0 + a * np.where(have, x_before, 0.0), 0.5, 2.0), 1.0)
    return rho, np.sqrt(np.maximum(var, 0.0))


def _uniform_posterior_mean(mu: _F64, sd: _F64) -> _F64:
    """Mean of N(mu, sd²) truncated to [0, 1] — the posterior mean of φ under a uniform prior.

    Mirrored so the centre is at or below ½, the window lies above it; a window far out in the
    normal's tail (more than 5 sd) is handled in scaled form (``erfcx``), where the plain
    ratio of two underflowing probabilities would be 0/0.
    """
    flip = mu > 0.5
    m0 = np.where(flip, 1.0 - mu, mu)
    a = -m0 / sd
    b = (1.0 - m0) / sd  # > 0
    tail = a > 5.0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore"):
        z = np.where(a > 0, ndtr(-a) - ndtr(-b), ndtr(b) - ndtr(a))
        m = m0 + sd * (np.exp(-0.5 * a * a) - np.exp(-0.5 * b * b)) / (np.sqrt(2.0 * np.pi) * z)
        if tail.any():  # rare: only then the scaled form (six more calls on every change)
            lr = 0.5 * (a * a - b * b)  # log of φ(b)/φ(a), < 0
            den = erfcx(a / np.sqrt(2.0)) - np.exp(lr) * erfcx(b / np.sqrt(2.0))
            far = m0 + sd * np.sqrt(2.0 / np.pi) * -np.expm1(lr) / den
            m = np.where(tail, far, m)
    out: _F64 = np.minimum(np.maximum(np.where(flip, 1.0 - m, m), 0.0), 1.0)
    return out


def _where_solvable(x: float | _F64, solvable: npt.NDArray[np.bool_]) -> _F64:
    """A per-interval parameter (scalar or array) at the solvable intervals."""
    if isinstance(x, np.ndarray) and x.ndim:
        out: _F64 = x[solvable]
        return out
    return np.full(int(np.count_nonzero(solvable)), float(x))


def split_interval(
    t0_ns: _I64,
    t1_ns: _I64,
    energy_kws: _F64,
    p0_kw: _F64,
    p1_kw: _F64,
    resolution_kws: float | _F64,
    switch_ns: _I64,
    rho: float | _F64 = 1.0,
    scatter: float | _F64 = 0.0,
) -> tuple[_I64, _F64]:
    """Offset τ (ns after ``t0``) of each change and the old state's share of its energy.

    Arrays are per interval that changes state. ``p0``/``p1`` are NaN where no instantaneous
    reading exists; ``resolution_kws`` is one count of the energy (``inf`` for the trapezoid,
    whose solution is ½ anyway); ``switch_ns`` is a known change instant or :data:`NO_SWITCH`;
    ``rho`` and ``scatter`` are the expected time base and its scatter (:func:`time_base_at`).
    """
    dt_ns = t1_ns - t0_ns
    dt_s = dt_ns / 1e9
    phi = np.full(dt_ns.shape, 0.5)
    dp = p0_kw - p1_kw
    with np.errstate(invalid="ignore"):
        solvable = np.isfinite(dp) & (np.abs(dp) * dt_s > resolution_kws)
    if solvable.any():
        s, r, q = (_where_solvable(x, solvable) for x in (scatter, rho, resolution_kws))
        e = energy_kws[solvable]
        # device time a change interval covers (length-biased), within the bounds of ρ
        d = dt_s[solvable] * np.minimum(np.maximum(r + s * s / r, 0.5), 2.0)
        lever = dp[solvable] * d
        mu = (e - p1_kw[solvable] * d) / lever
        sd = np.maximum(np.sqrt((s * e) ** 2 + q * q / 6.0) / np.abs(lever), 1e-12)
        phi[solvable] = _uniform_posterior_mean(mu, sd)
    tau = np.rint(phi * dt_ns).astype(np.int64)
    known = switch_ns != NO_SWITCH
    tau[known] = np.clip(switch_ns[known] - t0_ns[known], 0, dt_ns[known])
    frac = tau / dt_ns
    w0 = p0_kw * frac
    w = w0 + p1_kw * (1.0 - frac)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(np.isfinite(w) & (w > 0), w0 / w, frac)
    out: _F64 = np.minimum(np.maximum(share, 0.0), 1.0)
    return tau, out
