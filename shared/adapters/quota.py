"""One image quota for every instance: call slots handed out from a schedule kept in storage.

Azure OpenAI enforces an image deployment's requests a minute over short windows (1-10 s) and
answers 429 beyond them. Flex Consumption runs as many instances as the load asks for, and each
would pace its own calls to the whole quota; so the schedule lives in one small blob,
`work/quota/images.json`, that every instance updates atomically (If-Match on Blob Storage and
Azurite, a file lock on a local folder): for each deployment, the time of its next free slot.

A job asks for its slots (the `reserve` step), then waits for the first of them in the
orchestrator, on a durable timer, holding no activity; the image call starts at its slot. Slots
are handed out in the order jobs ask, so under a backlog jobs finish in the order they arrived
instead of all finishing late. With several deployments (`VARIA_IMAGE_DEPLOYMENTS`; quota is per
region), each slot goes to the deployment whose next slot is earliest; a deployment that answered
429 is held off for as long as its retry-after asked, so the next round goes elsewhere.

Why a blob and not a Durable entity: the schedule is a few hundred bytes updated once per image
request, far below Blob Storage's rate for one blob; it needs no extension feature the local
runtime lacks, works the same on Azurite, a folder and Azure, and the generate step can read it
without going through the orchestrator. A lease would serialize the same way but costs two more
round trips per update.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.adapters.storage import WORK, Storage
from shared.config import ImageDeployment

SCHEDULE = "quota/images.json"
_SENT = "sent:"  # the schedule's key for when a deployment's last request left, beside its next slot
_LATENCY = "latency:"  # ... and for its measured image latency (seconds)
LATENCY_WEIGHT = 0.2  # each new measurement's share of the moving average
# A margin the gate learns: each 429 widens a deployment's spacing by 5% of a slot (to 25% at
# most), each delivered call narrows it by a tenth. Calls reach the service later than they leave
# the gate by however long the instance and the network take, and that varies: 20 ms one minute,
# 300 ms while an instance starts a hundred jobs. A fixed slack that covered the worst would cost
# its share of the quota all the time; the margin costs it only while the 429s say so. A request
# that left its gate late (its instance is busy: the same load delays the next ones on their way)
# widens it by half a step, before any 429 has to say so.
_MARGIN = "margin:"
MARGIN_STEP, MARGIN_MAX, MARGIN_KEEP = 0.05, 0.25, 0.9
LATE_MARGIN_STEP = MARGIN_STEP / 2
# 2% over the exact spacing: a call reaches the service a few milliseconds after its slot, and
# without slack that jitter would put one call too many in some windows.
SLACK = 1.02
# A job's n images go in one request (one slot) when sending them one by one would make the job
# wait longer than this for its last slot (see plan()).
BATCH_ABOVE_S = 1.0


def interval_s(deployment: ImageDeployment) -> float:
    """Seconds between two calls to one deployment: its quota's spacing."""
    return 60.0 / deployment.rpm * SLACK


@dataclass(frozen=True)
class Slot:
    """One image request's turn: which deployment (its `key`) and when (Unix seconds)."""

    deployment: str
    at: float


@dataclass(frozen=True)
class PlannedRequest:
    """One image request of a job: the variations it draws, where, and no earlier than when."""

    indices: tuple[int, ...]
    deployment: str
    at: float


class ImageQuota:
    """The shared schedule of image-call slots for a set of deployments."""

    def __init__(
        self,
        storage: Storage,
        deployments: Sequence[ImageDeployment],
        *,
        unit: str = "request",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not deployments:
            raise ValueError("an image quota needs at least one deployment")
        self.storage = storage
        self.deployments = {d.key: d for d in deployments}
        self.unit = unit
        self._clock = clock

    def plan(self, indices: Sequence[int], avoid: Sequence[str] = ()) -> list[PlannedRequest]:
        """Reserve the slots for these variations' image requests, in one atomic update.

        Counted by request (Microsoft's quota table gives GPT-image limits in requests a minute),
        a job whose images would otherwise wait on the quota sends them in one request of n
        images: one slot, and the job finishes one call after it starts. Where the quota has room
        for all of them within BATCH_ABOVE_S, they go out one per request, in parallel, so one
        refused or failed image costs no other. Counted by image, each image is one request.
        `avoid` lists deployments to pass over while another one has a slot as early.
        """
        if not indices:
            return []
        planned: list[PlannedRequest] = []

        def change(raw: bytes | None) -> bytes:
            planned.clear()
            state = _read(raw)
            now = self._clock()
            singles = _slots(state.copy(), self._ordered(avoid), len(indices), now)
            batch = (
                self.unit == "request"
                and len(indices) > 1
                and max(s.at for s in singles) - min(s.at for s in singles) > BATCH_ABOVE_S
            )
            if batch:
                (slot,) = _slots(state, self._ordered(avoid), 1, now)
                planned.append(PlannedRequest(tuple(indices), slot.deployment, slot.at))
            else:
                for index, slot in zip(indices, _slots(state, self._ordered(avoid), len(indices), now), strict=True):
                    planned.append(PlannedRequest((index,), slot.deployment, slot.at))
            return json.dumps(state, sort_keys=True).encode()

        self.storage.update(WORK, SCHEDULE, change)
        return list(planned)

    def slot_for(self, count: int) -> Slot:
        """A slot for one request of `count` images, taken now (a request that came without one).

        Counted by request it is one slot; counted by image, `count` slots in a row on one
        deployment, and the request waits for the last of them.
        """
        taken: list[Slot] = []

        def change(raw: bytes | None) -> bytes:
            taken.clear()
            state = _read(raw)
            now = self._clock()
            (first,) = _slots(state, self._ordered(()), 1, now)
            taken.append(first)
            if self.unit == "image":
                for _ in range(count - 1):
                    (more,) = _slots(state, [(self.deployments[first.deployment], False)], 1, now)
                    taken.append(more)
            return json.dumps(state, sort_keys=True).encode()

        self.storage.update(WORK, SCHEDULE, change)
        return taken[-1]

    def send_turn(self, deployment: str) -> float:
        """When this request may leave (Unix seconds): one interval after the last request that left.

        Slots order the calls, but a call starts late whenever its instance is busy, and the one
        after it may start on time: two calls closer than the quota's spacing, and a 429. So the
        request passes this gate just before it is sent, and the gate spaces the calls as they
        really leave. The wait is that lateness, a fraction of one interval; the gate also moves
        the slots still to hand out, so they follow the calls.
        """
        spacing = interval_s(self.deployments[deployment])
        return self._take_turn(deployment, lambda sent, margin: max(self._clock(), sent + spacing + margin))

    def retry_turn(self, deployment: str, seconds: float, rejected_turn: float) -> float:
        """When a request answered 429 may leave again: as soon as the service said the window has room.

        The rejected request used no quota, so its retry takes its place rather than a new turn
        after it, unless another request has left since, which the retry then follows. The turns
        still to come move back behind it.
        """
        spacing = interval_s(self.deployments[deployment])

        def when(sent: float, margin: float) -> float:
            # As long as the service asked, and the slack of a slot more: this is the last attempt.
            soonest = self._clock() + max(0.0, seconds) + (SLACK - 1) * spacing + margin
            return soonest if sent <= rejected_turn else max(soonest, sent + spacing + margin)

        return self._take_turn(deployment, when, after_429=True)

    def _take_turn(self, deployment: str, when: Callable[[float, float], float], *, after_429: bool = False) -> float:
        """Record that a request to `deployment` leaves at `when(last one sent, margin)`; slots to come follow it."""
        spacing = interval_s(self.deployments[deployment])
        turn: list[float] = []

        def change(raw: bytes | None) -> bytes:
            state = _read(raw)
            if after_429:
                _widen(state, deployment, spacing)
            at = when(state.get(_SENT + deployment, 0.0), state.get(_MARGIN + deployment, 0.0))
            state[_SENT + deployment] = at
            state[deployment] = max(state.get(deployment, 0.0), at + spacing)
            turn[:] = [at]
            return json.dumps(state, sort_keys=True).encode()

        self.storage.update(WORK, SCHEDULE, change)
        return turn[0]

    def left_late(self, deployment: str, turn: float, left: float) -> None:
        """The request given `turn` left at `left`, later: the next request is spaced from when it really left.

        A turn is a moment the gate waits for, and the request leaves at it unless its instance is
        busy (the schedule's own update, a thread that wakes late). The next turn was measured from
        the one given, so it would come that much too soon. Unless another request has taken a
        turn since (it is then already spaced from this one's turn, and on its way), the schedule
        takes the real departure instead. Either way the margin widens by LATE_MARGIN_STEP: the
        load that made this request late delays the next ones on their way to the service too.
        """
        if deployment not in self.deployments:
            return
        spacing = interval_s(self.deployments[deployment])

        def change(raw: bytes | None) -> bytes:
            state = _read(raw)
            _widen(state, deployment, spacing, LATE_MARGIN_STEP)
            if state.get(_SENT + deployment) == turn:
                state[_SENT + deployment] = left
                state[deployment] = max(state.get(deployment, 0.0), left + spacing)
            return json.dumps(state, sort_keys=True).encode()

        self.storage.update(WORK, SCHEDULE, change)

    def hold_off(self, deployment: str, seconds: float) -> None:
        """A 429 from `deployment` asked for `seconds`: hand out none of its slots, and send nothing, before then.

        The 429 also widens the gate's margin (MARGIN_STEP), as a retry_turn does.
        """
        if deployment not in self.deployments:
            return
        spacing = interval_s(self.deployments[deployment])

        def change(raw: bytes | None) -> bytes:
            state = _read(raw)
            _widen(state, deployment, spacing)
            until = self._clock() + max(0.0, seconds)
            state[deployment] = max(state.get(deployment, 0.0), until)
            state[_SENT + deployment] = max(state.get(_SENT + deployment, 0.0), until - spacing)
            return json.dumps(state, sort_keys=True).encode()

        self.storage.update(WORK, SCHEDULE, change)

    def record_latency(self, deployment: str, seconds: float) -> None:
        """Fold a delivered call's duration into the deployment's measured latency (a moving average);
        the call got through, so the margin narrows."""
        if deployment not in self.deployments or seconds <= 0:
            return

        def change(raw: bytes | None) -> bytes:
            state = _read(raw)
            if _MARGIN + deployment in state:
                state[_MARGIN + deployment] *= MARGIN_KEEP
            key = _LATENCY + deployment
            state[key] = seconds if key not in state else (1 - LATENCY_WEIGHT) * state[key] + LATENCY_WEIGHT * seconds
            return json.dumps(state, sort_keys=True).encode()

        self.storage.update(WORK, SCHEDULE, change)

    def measured_latency_s(self) -> float | None:
        """The slowest deployment's measured image latency, None before any call was measured."""
        try:
            state = _read(self.storage.get(WORK, SCHEDULE))
        except LookupError:
            return None
        measured = [state[_LATENCY + key] for key in self.deployments if _LATENCY + key in state]
        return max(measured) if measured else None

    def concurrency(self, fallback_latency_s: float) -> int:
        """Image calls in flight when the quota is busy: every deployment's rpm × its latency (Little's law), + 1.

        The latency is the one measured (record_latency), else `fallback_latency_s`.
        """
        latency = self.measured_latency_s() or fallback_latency_s
        rpm = sum(d.rpm for d in self.deployments.values())
        return max(1, math.ceil(rpm * latency / 60)) + 1

    def _ordered(self, avoid: Sequence[str]) -> list[tuple[ImageDeployment, bool]]:
        return [(d, d.key in avoid) for d in self.deployments.values()]


def _widen(state: dict[str, float], deployment: str, spacing: float, step: float = MARGIN_STEP) -> None:
    """A 429 came though the gate spaced the calls (or a request left late): widen the deployment's margin by
    `step` of a slot (to MARGIN_MAX)."""
    margin = state.get(_MARGIN + deployment, 0.0) + step * spacing
    state[_MARGIN + deployment] = min(margin, MARGIN_MAX * spacing)


def _read(raw: bytes | None) -> dict[str, float]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}  # a schedule that cannot be read is a free one: the worst is one 429 and a retry
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _slots(
    state: dict[str, float], deployments: list[tuple[ImageDeployment, bool]], count: int, now: float
) -> list[Slot]:
    """Take `count` slots from `state` (changed in place): each from the deployment free soonest."""
    slots = []
    for _ in range(count):
        # The earliest slot; among equals, not a deployment to avoid, then the one listed first.
        deployment, _avoided = min(deployments, key=lambda pair: (max(now, state.get(pair[0].key, 0.0)), pair[1]))
        at = max(now, state.get(deployment.key, 0.0))
        state[deployment.key] = at + interval_s(deployment)
        slots.append(Slot(deployment.key, at))
    return slots
