"""Varia on a laptop: `python -m shared.cli vary photo.jpg "as a watercolour" --n 2 --profile kids`.

Runs the same orchestrator and activities as the Functions app, in process. With nothing
configured it uses the offline providers and a local folder (.varia/); set the Azure settings
(see local.settings.json.example) to use AI Vision, Azure OpenAI and Blob Storage instead.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shared import ai_models
from shared.adapters.services import Services, build_services
from shared.adapters.storage import OUTPUTS, BlobNotFound, LocalStorage, Storage
from shared.config import ConfigError, Settings, activity_concurrency
from shared.core.jobs import JobState, ProfileEnforced, RequestError, check_options, clean_prompt, request_for_upload
from shared.core.lineage import check_action, check_output, chosen_parent, estimate, request_from_parent
from shared.core.models import JobRequest, Manifest
from shared.core.orchestrator import orchestrate_job
from shared.core.steps import STEPS, delivered_so_far, manifest_name
from shared.local.runtime import Activity, Instance, LocalRuntime
from shared.local.store import InstanceStore, StorageInUse, StorageLock, lock_storage

SAMPLE_IMAGE = Path(__file__).parent / "assets" / "sample-meadow.png"
DEFAULT_PROMPT = "as a watercolour"
# What a stop does (LocalRuntime.shutdown): the running steps finish and are recorded with the job.
STOPPING = (
    "Stopping: the running steps finish and are saved with their jobs, which resume where they stopped "
    "at the next start (Ctrl-C again to quit at once: the interrupted steps then run again at that start)..."
)


def bind_activities(services: Services) -> dict[str, Activity]:
    """Varia's activities by name, each bound to `services`, as the local runtime runs them."""
    return {name: functools.partial(step, services) for name, step in STEPS.items()}


class VariaRuntime(LocalRuntime):
    """The local runtime over Varia's storage: its jobs are recorded there and survive a restart.

    A job is known if the runtime has it (running, or recorded by an earlier process) or if its
    manifest is stored (it finished, whatever ran it), so an identical request finds it and
    pays nothing. It may hold the storage's owner lock, released when it shuts down.
    """

    def __init__(self, storage: Storage, *args: Any, lock: StorageLock | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.storage = storage
        self.lock = lock

    async def status(self, job_id: str) -> JobState | None:
        state = await super().status(job_id)
        if state is not None:
            return state
        try:
            manifest = json.loads(self.storage.get(OUTPUTS, manifest_name(job_id)))
        except BlobNotFound:
            return None
        n = manifest.get("request", {}).get("n", 0)
        return JobState(job_id, "Completed", {"stage": "done", "done": n, "total": n}, manifest)

    def shutdown(self) -> list[str]:
        try:
            return super().shutdown()
        finally:
            if self.lock is not None:
                self.lock.release()


def make_runtime(
    services: Services,
    max_workers: int | None = None,
    retry_scale: float = 1.0,
    activities: Mapping[str, Activity] | None = None,
    durable: bool = True,
    lock: StorageLock | None = None,
) -> VariaRuntime:
    """The in-process Durable runtime with Varia's orchestrator and activities bound to `services`.

    Its pool follows the image quota, as the Functions host's maxConcurrentActivityFunctions does.
    Tests pass `activities` to replace some with faulty ones. `durable` records every job in
    storage (`work/orchestrations/`); `lock` is released when the runtime shuts down.
    """
    bound = activities if activities is not None else bind_activities(services)
    store = InstanceStore(services.storage) if durable else None
    if max_workers is not None:  # a fixed pool, as a test asks
        return VariaRuntime(
            services.storage, orchestrate_job, bound, max_workers=max_workers, retry_scale=retry_scale, store=store,
            lock=lock,
        )  # fmt: skip
    return VariaRuntime(
        services.storage,
        orchestrate_job,
        bound,
        max_workers=MAX_THREADS,
        retry_scale=retry_scale,
        store=store,
        lock=lock,
        limit=activity_limits(services),
    )


# The local runtime's threads; how many of them run at once is activity_limits' decision.
MAX_THREADS = 64
# Steps other than image calls (prepare, caption, compose, reserve, persist) at once: they are
# short, and more of them at once only slows every thread of this process, the image calls'
# uploads included (a late upload can bring two calls inside one rate-limit window).
SHORT_STEPS = 4


def activity_limits(services: Services) -> Callable[[str], int]:
    """How many activities of each kind the local runtime runs at once.

    Image calls: as many as the quota keeps in flight, every deployment's rpm × the image latency
    measured so far (ImageQuota.concurrency; the model's typical latency before the first call),
    looked up again every few seconds. The rest: SHORT_STEPS.
    """
    quota = services.quota
    typical = ai_models.TYPICAL_IMAGE_LATENCY_S.get(services.settings.image_quality, 60.0)
    cached: list[tuple[float, int]] = []

    def limit(name: str) -> int:
        if name != "generate":
            return SHORT_STEPS
        if quota is None:  # offline: drawn on this machine's CPU
            return SHORT_STEPS
        now = time.monotonic()
        if not cached or now - cached[0][0] > 5.0:
            try:
                cached[:] = [(now, quota.concurrency(typical))]
            except Exception:  # noqa: BLE001 - storage unreachable for a moment: keep the last size
                cached[:] = [(now, cached[0][1] if cached else activity_concurrency(services.settings.image_rpm))]
        return cached[0][1]

    return limit


def owning_runtime(services: Services, command: str, elsewhere: str) -> VariaRuntime:
    """A durable runtime that owns the storage: StorageInUse (naming the owner) if another process does.

    `command` names this process to the next one; `elsewhere` says how to pick another local folder
    (e.g. "--out another-folder"). Call `resume_unfinished()` to carry on the jobs recorded there.
    """
    hint = (
        f"use another folder ({elsewhere})"
        if isinstance(services.storage, LocalStorage)
        else "use another storage account (AzureWebJobsStorage)"
    )
    return make_runtime(services, lock=lock_storage(services.storage, command, hint))


MAX_RETRY_AFTER_S = 60.0  # a Retry-After longer than this is read as a minute


class PollSchedule:
    """How long to wait before the next look at a job: soon after a change, then less and less often.

    `first` seconds after the stage changes (and at the start), growing by `growth` at each look
    that finds the same stage, up to `most`; never sooner than a Retry-After the service asked
    for. A job that sits in one stage for minutes (an image model at its quota) costs a look
    every `most` seconds, not a steady stream of storage listings or status requests.
    """

    def __init__(self, first: float = 1.0, growth: float = 1.5, most: float = 10.0) -> None:
        self.first, self.growth, self.most = first, growth, most
        self._stage: object = None
        self._delay = first  # the next pause while the stage stays the same

    def next_delay(self, stage: object, retry_after: float | None = None) -> float:
        """The pause before the next look, given the stage the last look found."""
        if stage != self._stage:
            self._stage, self._delay = stage, self.first
        delay = self._delay
        self._delay = min(self.most, delay * self.growth)
        if retry_after is not None and retry_after > delay:
            delay = min(retry_after, MAX_RETRY_AFTER_S)
        return delay


class _Progress:
    """Prints each stage as the orchestrator reports it, and "k/n" as images are stored.

    The orchestrator waits for a whole fan-out round at once, so within a round the count of
    stored images is the progress (the status API counts the same way).
    """

    def __init__(self, storage: Storage, job_id: str, stream: Any) -> None:
        self.storage, self.job_id, self.stream = storage, job_id, stream
        self.started = time.monotonic()
        self.seen: set[tuple[Any, ...]] = set()
        self.lock = threading.Lock()
        self.custom: dict[str, Any] = {}

    def on_status(self, runtime_status: str, custom: dict[str, Any] | None) -> None:
        """The local runtime's callback: each change of the orchestrator's custom status."""
        if self.custom.get("stage") == "generating":  # the round ended: say how far it got first
            self._show(delivered_so_far(self.storage, self.job_id))
        self.custom = custom or {}
        self._show(self.custom.get("done", 0))

    def follow(
        self,
        instance: Instance,
        wait: Callable[[float], bool] | None = None,
        schedule: PollSchedule | None = None,
    ) -> None:
        """Count stored images while the job generates, on `schedule`, until it ends.

        `wait(seconds)` is True once the job has ended (default: the instance's own event; tests
        pass a fake clock). Stages arrive by `on_status` at once: only the count is polled.
        """
        wait = wait or instance.done.wait
        schedule = schedule or PollSchedule()
        while not wait(schedule.next_delay(self.custom.get("stage"))):
            if self.custom.get("stage") == "generating":
                self._show(delivered_so_far(self.storage, self.job_id))

    def _show(self, done: int) -> None:
        stage, total = self.custom.get("stage"), self.custom.get("total", 0)
        with self.lock:
            done = max(done, self.custom.get("done", 0))
            if not stage or (stage, done) in self.seen:
                return
            self.seen.add((stage, done))
            counter = f" {done}/{total}" if stage == "generating" and total else ""
            print(f"  [{time.monotonic() - self.started:5.1f}s] {stage}{counter}", file=self.stream, flush=True)


def _reference(given: str) -> tuple[bytes, str]:
    """--reference PATH or PATH:ROLE: the picture's bytes and its role."""
    path, _, role = given.rpartition(":")
    if not path or role.lower() not in ("style", "subject"):
        path, role = given, "style"
    return Path(path).read_bytes(), role


def _output_values(args: argparse.Namespace) -> dict[str, Any]:
    names = ("quality", "aspect", "size", "format", "compression", "background")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _request(args: argparse.Namespace, settings: Settings, services: Services) -> tuple[JobRequest, str]:
    """The job the command asks for, and what it starts from (a file, or a variation of an earlier job)."""
    profile, n, mode = check_options(settings, args.profile, args.n, args.mode)
    if args.from_variation:
        if args.image is not None and args.prompt is None:  # `vary --from J:K "new prompt"`: the one word is the prompt
            args.image, args.prompt = None, args.image
        if args.image is not None or args.mask or args.reference:
            raise RequestError("--from starts from an earlier result: send no image, --mask or --reference with it.")
        job, _, index = args.from_variation.rpartition(":")
        if not job:
            job, index = args.from_variation, "0"
        parent, manifest = chosen_parent(services.storage, job, index)
        action, strength = check_action(args.action or "vary", args.strength)
        prompt = clean_prompt(args.prompt) if args.prompt else None
        request = request_from_parent(
            parent, manifest, action=action, strength=strength, prompt=prompt, profile=profile, n=n,
            output=check_output(settings, _output_values(args)), origin="cli", force=args.force,
            requested_profile=args.profile, profile_enforced=bool(settings.enforced_profile),
        )  # fmt: skip
        shown = f"{action}{f' ({strength})' if strength else ''} of variation {parent.index} of {parent.job_id}"
        return request, shown
    if args.action or args.strength:
        raise RequestError("--action and --strength take an earlier result further: send --from JOB:INDEX with them.")
    prompt = clean_prompt(args.prompt or DEFAULT_PROMPT)
    image_path = Path(args.image or SAMPLE_IMAGE)
    data = image_path.read_bytes()
    mask = Path(args.mask).read_bytes() if args.mask else None
    references = [_reference(given) for given in args.reference or []]
    # The input is kept as given, as uploads/{sha256}.{suffix}; the job never modifies it.
    extension = "".join(c for c in image_path.suffix.lower() if c.isalnum())[:8] or "bin"
    request = request_for_upload(
        services.storage,
        data,
        extension,
        prompt=prompt,
        profile=profile,
        n=n,
        mode=mode,
        origin="cli",
        force=args.force,
        filename=image_path.name,
        requested_profile=args.profile,
        profile_enforced=bool(settings.enforced_profile),
        mask=mask,
        references=references,
        output=check_output(settings, _output_values(args), masked=mask is not None),
    )
    return request, image_path.name


def vary(args: argparse.Namespace, environ: dict[str, str]) -> int:
    env = dict(environ)
    if args.out:
        env["VARIA_STORAGE"], env["VARIA_LOCAL_DIR"] = "local", args.out
    settings = Settings.from_env(env)
    services = build_services(settings)
    storage = services.storage
    request, source = _request(args, settings, services)
    job_id, profile, n, mode = request.job_id, request.profile, request.n, request.mode
    enforced = ", enforced by VARIA_ENFORCED_PROFILE" if request.profile_enforced else ""
    print(f"Varia job {job_id}: {request.prompt!r} on {source} (profile {profile}{enforced}, n={n}, mode {mode})")
    print(f"  providers: {services.providers.names()}; storage: {storage.description}")
    cost = estimate(request, settings, services.providers.paid())
    calls = ", ".join(f"{count} {kind}" for kind, count in cost["paid_calls"].items() if count) or "none"
    print(f"  estimate: at most ${cost['usd']:.4f} (paid calls: {calls}; images at {cost['quality']} quality)")
    if args.dry_run:
        return 0

    if storage.info(OUTPUTS, manifest_name(job_id)) is not None:
        print("  this exact job ran before: showing its manifest (no new calls; --force to run again)")
    else:
        runtime = owning_runtime(services, "python -m shared.cli vary", "--out another-folder")
        try:
            recorded = runtime.get(job_id)
            if recorded is not None and not recorded.done.is_set():
                print("  this job stopped before it finished: resuming it (steps already done are not run again)")
            progress = _Progress(storage, job_id, sys.stderr)
            instance = runtime.start_background(
                job_id, request.model_dump(mode="json"), progress.on_status, replace_finished=True
            )
            progress.follow(instance)
        except KeyboardInterrupt:
            print(STOPPING, file=sys.stderr, flush=True)
            try:
                runtime.shutdown()
            except KeyboardInterrupt:
                os._exit(130)  # the activity pool's threads would otherwise be joined at exit
            print("Stopped: run the same command again to finish the job.", file=sys.stderr, flush=True)
            return 130
        except BaseException:
            runtime.shutdown()
            raise
        runtime.shutdown()
        if instance.runtime_status != "Completed":
            print(f"error: the orchestration ended {instance.runtime_status}: {instance.error}", file=sys.stderr)
            return 1

    manifest = Manifest.model_validate_json(storage.get(OUTPUTS, manifest_name(job_id)))
    print(f"status: {manifest.status}" + (f" ({manifest.message})" if manifest.message else ""))
    if manifest.caption:
        print(f"caption ({manifest.caption.provider}): {manifest.caption.text}")
    if manifest.composition and manifest.composition.output_prompt:
        print(f"output prompt ({manifest.composition.provider}): {manifest.composition.output_prompt}")
    for v in manifest.variations:
        where = storage.url_hint(v.image.container, v.image.name) if v.image else v.reason
        print(f"  variation {v.index}: {v.status} [{v.provider}] {where}")
    print(f"manifest: {storage.url_hint(OUTPUTS, manifest_name(job_id))}")
    if args.json:
        print(json.dumps(manifest.model_dump(mode="json"), indent=2, ensure_ascii=False))
    return {"succeeded": 0, "refused": 3, "failed": 1}[manifest.status]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared.cli", description="Varia: image variations from a prompt.")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("vary", help="make variations of one image")
    v.add_argument("image", nargs="?", default=None, help="image file (default: the sample meadow)")
    v.add_argument("prompt", nargs="?", default=None, help=f"how the image should change (default: {DEFAULT_PROMPT!r})")
    v.add_argument("--n", type=int, default=None, help="number of variations (default VARIA_DEFAULT_VARIATIONS)")
    v.add_argument("--profile", choices=["general", "kids"], default=None, help="safety profile")
    v.add_argument("--mode", choices=["edit", "generate"], default=None, help="edit keeps the subject (default)")
    v.add_argument("--out", default=None, help="write to this local folder (overrides VARIA_STORAGE)")
    v.add_argument("--mask", default=None, help="a region edit: a PNG whose transparent pixels mark the area to change")
    v.add_argument(
        "--reference",
        action="append",
        metavar="PATH[:style|subject]",
        help="a picture to borrow the style of (default) or to put in the scene; up to 4",
    )
    v.add_argument(
        "--from",
        dest="from_variation",
        metavar="JOB:INDEX",
        help="start from variation INDEX (from 0) of an earlier job instead of an image",
    )
    v.add_argument("--action", choices=["vary", "remix", "refine"], help="with --from: what to do (default vary)")
    v.add_argument("--strength", choices=["subtle", "strong"], help="with --action vary (default subtle)")
    v.add_argument("--quality", choices=["low", "medium", "high", "auto"], help="image quality (refine: high)")
    v.add_argument("--aspect", choices=["auto", "square", "landscape", "portrait"], help="the images' shape")
    v.add_argument("--size", metavar="WxH", help="a custom size (gpt-image-2), e.g. 1536x864")
    v.add_argument("--format", choices=["png", "jpeg"], help="image format (default png)")
    v.add_argument("--compression", type=int, metavar="0-100", help="JPEG compression")
    v.add_argument("--background", choices=["auto", "opaque", "transparent"], help="transparent where supported")
    v.add_argument("--dry-run", action="store_true", help="print the cost estimate and start nothing")
    v.add_argument("--force", action="store_true", help="run again even if this exact job ran before")
    v.add_argument("--json", action="store_true", help="also print the manifest")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return vary(args, dict(os.environ))
    except StorageInUse as exc:
        print(f"error ({exc.code}): {exc}", file=sys.stderr)
        return 2
    except ProfileEnforced as exc:
        what_to_run = f"Run it without --profile, or with --profile {exc.enforced}"
        print(f"error ({exc.code}): {exc.message(what_to_run)}", file=sys.stderr)
        return 2
    except (ConfigError, RequestError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
