"""Per-request choice of a pod: zone-aware power-of-two-choices over pods that pass
active health checks, are not passively ejected and are not saturated.

The edge calls ``pick`` → ``begin`` → (request) → ``end`` for every attempt, so this
module is pure state and arithmetic: no I/O, no locks (one event loop per worker).

Decisions, and why:

* **The first upstream list starts healthy; pods added later start unhealthy.** A
  restarted edge worker serves at once instead of answering 503 for
  ``health_rise * health_interval_s``; a pod that joins later is usually still starting,
  so it must earn traffic with ``health_rise`` passing probes.
* **No panic mode.** When every pod fails its active checks we do not route to them
  (Envoy's ``healthy_panic_threshold`` would): ``NoHealthyUpstream`` lets the edge answer
  503 with Retry-After at once rather than after a connect timeout.
* **Connect failures ignore the ejection cap.** ``ejection_max_percent`` protects against
  overload-driven 5xx cascades, where ejecting pods piles their load on the rest. A pod
  that refused ``outlier_consecutive_failures`` connections in a row has nothing
  listening; keeping it in rotation only burns attempts and retry budget.
* **A passing active probe does not lift a passive ejection.** ``/readyz`` can pass
  while real requests fail (the case ejection exists for); ejections are already bounded
  by ``ejection_max_s``.
* **Weights compare load, not only sampling.** P2C draws its two candidates in proportion
  to weight and keeps the one with fewer outstanding requests *per unit of weight*
  (ties → the first draw). Comparing raw counts would ignore weights whenever both
  pods of a pair are drawn — always, with two pods — and break canary splits.
  With equal weights this is exactly "fewer outstanding".
* **Weight 0 means no new requests** (blue/green switch-over): such a pod keeps its
  state and in-flight requests but is never picked.
"""

from __future__ import annotations

import bisect
import enum
import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from strongroom.config import BalancerSettings

_PORT_MAX = 65535
# 2**30 * ejection_base_s exceeds any sane ejection_max_s; bounds the shift.
_EJECTION_DOUBLINGS_MAX = 30
# Random draws per candidate before pick() filters the whole group instead: with half
# the pods ineligible, 4 misses in a row happen 1 time in 16.
_DRAWS_MAX = 4


@dataclass(frozen=True, slots=True)
class Upstream:
    """One pod endpoint as the supervisor announces it in ``upstreams.json``."""

    name: str
    host: str
    port: int
    zone: str
    weight: int = 100
    version: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("upstream name must not be empty")
        if not self.host:
            raise ValueError(f"upstream {self.name}: host must not be empty")
        if not 0 < self.port <= _PORT_MAX:
            raise ValueError(f"upstream {self.name}: port {self.port} out of range")
        if self.weight < 0:
            raise ValueError(f"upstream {self.name}: weight must be >= 0")


class Outcome(enum.Enum):
    """How one attempt to a pod ended, as far as outlier detection cares."""

    SUCCESS = "success"
    HTTP_5XX = "http_5xx"
    CONNECT_FAILURE = "connect_failure"
    RESET = "reset"
    TIMEOUT = "timeout"


class NoHealthyUpstream(Exception):
    """No pod may take the request: all are down, ejected, weight 0 or excluded."""

    code = "no-healthy-upstream"


class AllUpstreamsSaturated(Exception):
    """Every pod that could take the request has ``pending_per_pod_max`` in flight."""

    code = "upstream-saturated"


class Pod:
    """Live state of one upstream. The proxy holds it for the length of a request."""

    __slots__ = (
        "_clock",
        "connect_failures",
        "draining",
        "ejected_until",
        "ejection_level",
        "ejections",
        "failures",
        "healthy",
        "name",
        "outstanding",
        "probe_failures",
        "probe_successes",
        "rr_current",
        "upstream",
        "weight",
    )

    def __init__(self, upstream: Upstream, *, healthy: bool, clock: Callable[[], float]) -> None:
        self.upstream = upstream
        # Copies of hot fields: pick() reads them for every candidate.
        self.name = upstream.name
        self.weight = upstream.weight
        self.outstanding = 0
        # Active checks.
        self.healthy = healthy
        self.draining = False
        self.probe_successes = 0
        self.probe_failures = 0
        # Passive outlier detection.
        self.failures = 0
        self.connect_failures = 0
        self.ejected_until = 0.0
        self.ejection_level = 0
        self.ejections = 0
        # Smooth weighted round robin's running score.
        self.rr_current = 0
        self._clock = clock

    @property
    def ejected(self) -> bool:
        return self._clock() < self.ejected_until

    @property
    def available(self) -> bool:
        """Healthy by active checks and not passively ejected."""
        return self.healthy and self._clock() >= self.ejected_until

    def __repr__(self) -> str:
        return (
            f"Pod({self.name!r}, zone={self.upstream.zone!r}, healthy={self.healthy}, "
            f"ejected_until={self.ejected_until:.3f}, outstanding={self.outstanding})"
        )


class _Group:
    """Pods of one locality tier with their cumulative weights for O(log n) draws."""

    __slots__ = ("cumulative", "pods", "total")

    def __init__(self, pods: list[Pod]) -> None:
        self.pods = pods
        self.cumulative: list[int] = []
        running = 0
        for pod in pods:
            running += pod.weight
            self.cumulative.append(running)
        self.total = running


class Balancer:
    """Pods of one edge worker, their health, and the per-request choice among them."""

    def __init__(
        self,
        settings: BalancerSettings,
        zone: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.zone = zone
        self._clock = clock
        self._random = (rng or random.Random()).random
        self._pending_max = settings.pending_per_pod_max
        self._round_robin = settings.algorithm == "round_robin"
        self._pods: tuple[Pod, ...] = ()
        self._by_name: dict[str, Pod] = {}
        self._groups: tuple[_Group, ...] = ()
        self._seeded = False

    # Membership ---------------------------------------------------------------------
    @property
    def pods(self) -> Sequence[Pod]:
        return self._pods

    def get(self, name: str) -> Pod | None:
        return self._by_name.get(name)

    def set_upstreams(self, upstreams: Sequence[Upstream]) -> None:
        """Adopt a new list; pods whose name, host and port are unchanged keep all state.

        A changed weight, zone or version updates the pod in place (canary shifts must
        not reset health); a changed address is a different process, so a new pod.
        """
        seen: set[str] = set()
        for upstream in upstreams:
            if upstream.name in seen:
                raise ValueError(f"duplicate upstream name {upstream.name!r}")
            seen.add(upstream.name)
        start_healthy = not self._seeded
        pods: list[Pod] = []
        for upstream in upstreams:
            pod = self._by_name.get(upstream.name)
            if (
                pod is not None
                and pod.upstream.host == upstream.host
                and pod.upstream.port == upstream.port
            ):
                pod.upstream = upstream
                pod.weight = upstream.weight
            else:
                pod = Pod(upstream, healthy=start_healthy, clock=self._clock)
            pods.append(pod)
        self._pods = tuple(pods)
        self._by_name = {pod.name: pod for pod in pods}
        local = [pod for pod in pods if pod.upstream.zone == self.zone]
        remote = [pod for pod in pods if pod.upstream.zone != self.zone]
        self._groups = tuple(_Group(group) for group in (local, remote) if group)
        if pods:
            self._seeded = True

    # Choice -------------------------------------------------------------------------
    def pick(self, exclude: Collection[str] = ()) -> Pod:
        """The pod for the next attempt; ``exclude`` names pods this request already tried.

        Own-zone pods first; other zones only when no own-zone pod can take it.
        Raises ``AllUpstreamsSaturated`` when pods could take it but all are full,
        else ``NoHealthyUpstream``.
        """
        now = self._clock()
        for group in self._groups:
            if group.total <= 0:
                continue
            if self._round_robin:
                pod = self._pick_round_robin(group, exclude, now)
            else:
                pod = self._pick_p2c(group, exclude, now)
            if pod is not None:
                return pod
        raise self._why_none(exclude, now)

    def _pick_p2c(self, group: _Group, exclude: Collection[str], now: float) -> Pod | None:
        # Draw by weight in O(log n) and reject ineligible pods: that samples exactly the
        # weighted distribution over eligible pods, in O(1) draws while most pods are
        # eligible. Only after _DRAWS_MAX misses do we filter the group in O(n).
        pods = group.pods
        cumulative = group.cumulative
        total = group.total
        pending_max = self._pending_max
        rnd = self._random
        for _ in range(_DRAWS_MAX):
            i = bisect.bisect_right(cumulative, rnd() * total)
            first = pods[i]
            if (
                first.healthy
                and first.ejected_until <= now
                and first.outstanding < pending_max
                and first.name not in exclude
            ):
                break
        else:
            return self._pick_p2c_filtered(group, exclude, now)
        rest = total - first.weight
        if rest <= 0:
            return first  # every other pod of the group has weight 0
        skip_from = cumulative[i] - first.weight
        for _ in range(_DRAWS_MAX):
            # Draw from the other pods' weight: skip over the first pod's interval.
            r = rnd() * rest
            if r >= skip_from:
                r += first.weight
            j = bisect.bisect_right(cumulative, r)
            if j == i or j >= len(pods):  # float rounding at an interval's edge
                continue
            second = pods[j]
            if (
                second.healthy
                and second.ejected_until <= now
                and second.outstanding < pending_max
                and second.name not in exclude
            ):
                if second.outstanding * first.weight < first.outstanding * second.weight:
                    return second
                return first
        return self._pick_p2c_filtered(group, exclude, now)

    def _pick_p2c_filtered(self, group: _Group, exclude: Collection[str], now: float) -> Pod | None:
        pending_max = self._pending_max
        candidates = [
            pod
            for pod in group.pods
            if pod.weight > 0
            and pod.healthy
            and pod.ejected_until <= now
            and pod.outstanding < pending_max
            and pod.name not in exclude
        ]
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        total = 0
        for pod in candidates:
            total += pod.weight
        first = _weighted_draw(candidates, self._random() * total, None)
        second = _weighted_draw(candidates, self._random() * (total - first.weight), first)
        if second.outstanding * first.weight < first.outstanding * second.weight:
            return second
        return first

    def _pick_round_robin(self, group: _Group, exclude: Collection[str], now: float) -> Pod | None:
        # nginx's smooth weighted round robin: plain rotation for equal weights, exact
        # proportions otherwise, and skipping ineligible pods needs no extra state.
        pending_max = self._pending_max
        best: Pod | None = None
        total = 0
        for pod in group.pods:
            if (
                pod.weight > 0
                and pod.healthy
                and pod.ejected_until <= now
                and pod.outstanding < pending_max
                and pod.name not in exclude
            ):
                pod.rr_current += pod.weight
                total += pod.weight
                if best is None or pod.rr_current > best.rr_current:
                    best = pod
        if best is not None:
            best.rr_current -= total
        return best

    def _why_none(self, exclude: Collection[str], now: float) -> Exception:
        for pod in self._pods:
            if (
                pod.weight > 0
                and pod.healthy
                and pod.ejected_until <= now
                and pod.name not in exclude
            ):
                return AllUpstreamsSaturated(
                    f"every eligible pod has {self._pending_max} requests in flight"
                )
        return NoHealthyUpstream(
            f"none of {len(self._pods)} pods is healthy, un-ejected and not yet tried"
        )

    # Request accounting and passive outlier detection --------------------------------
    def begin(self, pod: Pod) -> None:
        pod.outstanding += 1

    def end(self, pod: Pod, outcome: Outcome) -> None:
        """Close an attempt begun with ``begin`` and feed its outcome to outlier detection."""
        if pod.outstanding > 0:
            pod.outstanding -= 1
        if outcome is Outcome.SUCCESS:
            pod.failures = 0
            pod.connect_failures = 0
            return
        now = self._clock()
        if now < pod.ejected_until:
            return  # attempts begun before the ejection tell us nothing new
        pod.failures += 1
        if outcome is Outcome.CONNECT_FAILURE:
            pod.connect_failures += 1
        else:
            pod.connect_failures = 0
        threshold = self.settings.outlier_consecutive_failures
        if pod.failures < threshold:
            return
        if pod.connect_failures >= threshold or self._ejected_count(now) < self._ejection_cap():
            self._eject(pod, now)

    def _ejection_cap(self) -> int:
        return len(self._pods) * self.settings.ejection_max_percent // 100

    def _ejected_count(self, now: float) -> int:
        count = 0
        for pod in self._pods:
            if now < pod.ejected_until:
                count += 1
        return count

    def _decayed_level(self, pod: Pod, now: float) -> int:
        """The backoff level after halving once per quiet ``ejection_decay_s``."""
        if pod.ejection_level == 0 or now < pod.ejected_until:
            return pod.ejection_level
        decay_s = self.settings.ejection_decay_s
        if decay_s <= 0:
            return 0  # no memory: every ejection starts again from ejection_base_s
        periods = int((now - pod.ejected_until) // decay_s)
        return pod.ejection_level >> min(periods, _EJECTION_DOUBLINGS_MAX)

    def ejection_duration_s(self, level: int) -> float:
        """``ejection_base_s * 2^(level-1)`` capped at ``ejection_max_s``."""
        doublings = min(max(level - 1, 0), _EJECTION_DOUBLINGS_MAX)
        return min(self.settings.ejection_base_s * (1 << doublings), self.settings.ejection_max_s)

    def _eject(self, pod: Pod, now: float) -> None:
        pod.ejection_level = self._decayed_level(pod, now) + 1
        pod.ejections += 1
        pod.ejected_until = now + self.ejection_duration_s(pod.ejection_level)
        # It comes back with a clean slate: the next ejection needs fresh evidence.
        pod.failures = 0
        pod.connect_failures = 0

    # Active health checks ------------------------------------------------------------
    def set_health(self, name: str, *, ok: bool, draining: bool = False) -> None:
        """Record one active probe of pod ``name``; unknown names are ignored.

        ``health_rise`` consecutive passes make a pod healthy and ``health_fall``
        consecutive failures unhealthy; ``draining`` takes it down at once.
        """
        pod = self._by_name.get(name)
        if pod is None:
            return
        if ok and not draining:
            pod.probe_failures = 0
            pod.probe_successes += 1
            pod.draining = False
            if not pod.healthy and pod.probe_successes >= self.settings.health_rise:
                pod.healthy = True
                pod.failures = 0
                pod.connect_failures = 0
            return
        pod.probe_successes = 0
        pod.probe_failures += 1
        if draining:
            pod.draining = True
            pod.healthy = False
        elif pod.probe_failures >= self.settings.health_fall:
            pod.healthy = False

    # Status -------------------------------------------------------------------------
    def snapshot(self) -> list[dict[str, object]]:
        """Per-pod state for metrics and ``strongroom status``.

        ``ejections`` counts passive ejections since the pod joined (a counter);
        ``ejection_level`` is the current, decaying backoff exponent.
        """
        now = self._clock()
        rows: list[dict[str, object]] = []
        for pod in self._pods:
            upstream = pod.upstream
            ejected = now < pod.ejected_until
            rows.append(
                {
                    "name": pod.name,
                    "host": upstream.host,
                    "port": upstream.port,
                    "zone": upstream.zone,
                    "version": upstream.version,
                    "weight": pod.weight,
                    "healthy": pod.healthy,
                    "draining": pod.draining,
                    "ejected": ejected,
                    "ejected_for_s": round(pod.ejected_until - now, 3) if ejected else 0.0,
                    "available": pod.healthy and not ejected,
                    "outstanding": pod.outstanding,
                    "ejections": pod.ejections,
                    "ejection_level": self._decayed_level(pod, now),
                }
            )
        return rows


def _weighted_draw(candidates: list[Pod], r: float, skip: Pod | None) -> Pod:
    """The candidate whose weight interval holds ``r``, leaving out ``skip``'s interval."""
    for pod in candidates:
        if pod is skip:
            continue
        if r < pod.weight:
            return pod
        r -= pod.weight
    # Float rounding can leave r a hair above the total: fall back to the last one.
    for pod in reversed(candidates):
        if pod is not skip:
            return pod
    raise AssertionError("weighted draw from fewer than two candidates")
