"""Varia's benchmarks: each prints a ratio measured side by side in one run, against its goal.

    python -m bench.run            # all of them, about thirty minutes (scale alone takes twenty)
    python -m bench.run quota      # one of: critical-path, quota, cold-start, prepare, prepare-formats,
                                   # first-request, word-check-start, cost, scale

Everything runs on this machine: the Azure providers talk to the fake AI server on 127.0.0.1
(with the latencies and quota each benchmark sets), storage is a local folder.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from PIL import Image, ImageDraw

from shared.adapters.services import Services, build_services
from shared.config import Settings
from shared.core.models import JobRequest
from shared.functions.http_api import post_variation
from shared.local.cli import make_runtime
from shared.local.runtime import Instance, LocalRuntime
from tests.fake_ai import FakeAzureAI
from tests.support import NoCredential, azure_env, upload_request

REPO = Path(__file__).resolve().parent.parent
IMAGE_ROUTES = ("images.edit", "images.generate")


@dataclass
class Result:
    name: str
    measured: str
    goal: str
    met: bool
    details: str


def picture(seed: int, width: int = 640, height: int = 420) -> bytes:
    """A distinct small scene per seed (a new image is a new caption: no cache hit)."""
    img = Image.new("RGB", (width, height), ((seed * 37) % 255, 150, 200))
    draw = ImageDraw.Draw(img)
    draw.rectangle([seed % 200, 100, seed % 200 + 200, 300], fill=(200, (seed * 11) % 255, 60))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def services_for(fake: FakeAzureAI, folder: str, **env: str) -> Services:
    """The Azure providers with keys against the fake server; storage in a local folder."""
    settings = azure_env(fake, VARIA_STORAGE="local", VARIA_LOCAL_DIR=folder, VARIA_SERVICE_TIMEOUT_SECONDS="30", **env)
    return build_services(Settings.from_env(settings), NoCredential)


def timed_job(runtime: LocalRuntime, request: JobRequest) -> tuple[float, Instance]:
    started = time.perf_counter()
    instance = runtime.run(request.job_id, request.model_dump(mode="json"))
    return time.perf_counter() - started, instance


# --- 1. critical path ---------------------------------------------------------------------------


# The default quota, time-scaled by 10: 6 requests a minute over 10 s windows become 60 over 1 s.
QUOTA_SCALE = 10
DEFAULT_RPM = 6


def _critical_run(image_s: float, unit: str, seed: int) -> tuple[float, float]:
    """(job wall, physical limit) of one job of 4 at the default quota, counted by `unit`."""
    window = 10 / QUOTA_SCALE
    caption_s, compose_s, n = 1.0 / QUOTA_SCALE, 3.0 / QUOTA_SCALE, 4
    with FakeAzureAI() as fake, tempfile.TemporaryDirectory() as folder:
        fake.latency.update({"vision.analyze": caption_s, "chat": compose_s, "images.edit": image_s})
        fake.image_size_override = (256, 256)
        fake.limit_images(1, window, per_image=unit == "image")
        rpm = str(DEFAULT_RPM * QUOTA_SCALE)
        services = services_for(fake, folder, VARIA_IMAGE_REQUESTS_PER_MINUTE=rpm, VARIA_IMAGE_QUOTA_UNIT=unit)
        runtime = make_runtime(services)
        wall, instance = timed_job(runtime, upload_request(services, picture(seed), "as a watercolour", n=n))
        runtime.shutdown()
        assert instance.output["status"] == "succeeded", instance.output
        assert not any(c.status == 429 for c in fake.calls), "a call was answered 429"
        # The physical limit, as the services served it: the caption call, the composition call, and the
        # images. Counted by request, all four fit in one request: one image call. Counted by image, the
        # fourth image cannot start before three windows have passed.
        served = {route: [c.finished - c.started for c in fake.calls if c.route == route] for route in
                  ("vision.analyze", "chat", "images.edit")}  # fmt: skip
        spacing = (n - 1) * window if unit == "image" else 0.0
        physical = served["vision.analyze"][0] + served["chat"][0] + spacing + max(served["images.edit"])
        return wall, physical


def bench_critical_path() -> Result:
    """One job of 4 at the default quota (6 a minute), with 10, 30 and 60 s images, time-scaled by 10."""
    rows = []
    worst = 0.0
    _critical_run(0.1, "request", seed=9)  # warm-up, not counted: the process's first job loads the SDKs
    for k, production_s in enumerate((10, 30, 60)):
        image_s = production_s / QUOTA_SCALE
        request_wall, request_limit = _critical_run(image_s, "request", seed=10 + k)
        image_wall, image_limit = _critical_run(image_s, "image", seed=20 + k)
        ratio = request_wall / request_limit
        worst = max(worst, ratio)
        rows.append(
            f"{production_s} s images: {ratio:.3f} ({request_wall:.2f} s / {request_limit:.2f} s); counted by "
            f"image: {image_wall / image_limit:.3f} ({image_wall:.2f} s / {image_limit:.2f} s, of which "
            f"{3 * 10 / QUOTA_SCALE:.1f} s is the quota's spacing)"
        )
    return Result(
        "critical path (n=4, default quota)",
        f"{worst:.3f}",
        "<= 1.10",
        worst <= 1.10,
        "job wall / physical limit at 6 requests a minute (time-scaled by 10), counted by request as Microsoft's "
        "quota table gives GPT-image limits (one request of 4 images: caption + compose + one image call, as "
        "served). " + "; ".join(rows),
    )


# --- 2. quota --------------------------------------------------------------------------------------


def _quota_run(fake: FakeAzureAI, folder: str, rpm: int, jobs: int, per_window: int, window_s: float) -> dict[str, Any]:
    fake.reset()
    fake.image_size_override = (64, 64)
    fake.latency["images.edit"] = 0.2
    fake.limit_images(per_window, window_s)
    services = services_for(fake, folder, VARIA_IMAGE_REQUESTS_PER_MINUTE=str(rpm))
    runtime = make_runtime(services, retry_scale=0.1)
    image = picture(7)
    instances = [
        runtime.start_background(req.job_id, req.model_dump(mode="json"))
        for req in (upload_request(services, image, f"as a watercolour, take {k} ({rpm})", n=1) for k in range(jobs))
    ]
    for inst in instances:
        inst.done.wait(300)
    runtime.shutdown()
    calls = [c for c in fake.calls if c.route in IMAGE_ROUTES]
    ok = sorted(c.started for c in calls if c.status == 200)
    failed = sum(1 for inst in instances if not inst.output or inst.output["status"] != "succeeded")
    rate = (len(ok) - 1) / (ok[-1] - ok[0]) * window_s if len(ok) > 1 else 0.0
    return {
        "ratio": rate / per_window,
        "429": sum(1 for c in calls if c.status == 429),
        "requests": len(calls),
        "failed": failed,
        "images": len(ok),
    }


def bench_quota() -> Result:
    jobs, per_window, window_s = 50, 10, 1.0
    with FakeAzureAI() as fake, tempfile.TemporaryDirectory() as paced_dir, tempfile.TemporaryDirectory() as raw_dir:
        paced = _quota_run(fake, paced_dir, int(per_window * 60 / window_s), jobs, per_window, window_s)
        unpaced = _quota_run(fake, raw_dir, 100_000, jobs, per_window, window_s)
    met = paced["ratio"] >= 0.95 and paced["failed"] == 0
    return Result(
        f"quota ({jobs} jobs, {per_window} images per {window_s:.0f} s window)",
        f"{paced['ratio']:.3f}",
        ">= 0.95, 0 failed",
        met,
        f"paced: {paced['images']} images, {paced['failed']} failed jobs, {paced['429']} answers 429 of "
        f"{paced['requests']} requests. Without pacing (429 + retry-after only): ratio {unpaced['ratio']:.3f}, "
        f"{unpaced['failed']} failed, {unpaced['429']} answers 429 of {unpaced['requests']} requests",
    )


# --- 3. cold start ------------------------------------------------------------------------------

# Peak memory is read from /proc/self/status (VmHWM, in kB): unlike ru_maxrss, exec resets it, so a
# child does not inherit the benchmark process's own peak.
_HWM = 'int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])'

_IMPORT_PROBE = """
import time
started = time.perf_counter()
import {modules}
wall = time.perf_counter() - started
print(wall, HWM)
""".replace("HWM", _HWM)


def _import_cost(modules: str) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE.format(modules=modules)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "AZURE_FUNCTIONS_ENVIRONMENT": "Production"},
    ).stdout.split()
    return float(out[0]), float(out[1])


# What any Flex app with Durable and a reference-passing blob trigger must import to be indexed:
# the worker resolves the trigger's BlobClient annotation, and the binding imports the blob SDK
# and azure-identity. Varia's own cost is measured above that floor.
PLATFORM_FLOOR = "azure.functions, azure.durable_functions, azurefunctions.extensions.bindings.blob"


def bench_cold_start() -> Result:
    runs: dict[str, list[tuple[float, float]]] = {"floor": [], "bare": [], "app": []}
    for _ in range(7):  # interleaved, so all see the same machine state
        runs["floor"].append(_import_cost(PLATFORM_FLOOR))
        runs["bare"].append(_import_cost("azure.functions, azure.durable_functions"))
        runs["app"].append(_import_cost("function_app"))

    def median(kind: str, index: int) -> float:
        return statistics.median(run[index] for run in runs[kind])

    wall, rss = median("app", 0) / median("floor", 0), median("app", 1) / median("floor", 1)
    return Result(
        "cold start (import function_app)",
        f"wall {wall:.2f}, RSS {rss:.2f}",
        "<= 1.2 both",
        wall <= 1.2 and rss <= 1.2,
        "against importing what indexing needs (azure.functions + azure.durable_functions + the blob "
        "SDK-type binding), fresh processes, median of 7; "
        f"app {median('app', 0) * 1000:.0f} ms, {median('app', 1) / 1024:.0f} MB; "
        f"against azure.functions + azure.durable_functions alone: wall {median('app', 0) / median('bare', 0):.2f}, "
        f"RSS {median('app', 1) / median('bare', 1):.2f}",
    )


# --- 4. prepare ---------------------------------------------------------------------------------

_PREPARE_PROBE = """
import io, sys, time
from PIL import Image
data = open(sys.argv[1], "rb").read()
import shared.core.images
baseline = HWM
started = time.perf_counter()
if sys.argv[2] == "varia":
    result = shared.core.images.normalize(data)
    size, png = (result.width, result.height), result.data
else:  # the naive way: decode every pixel, then resize, then encode PNG (as Varia stored it before)
    with Image.open(io.BytesIO(data)) as img:
        small = img.convert("RGB").resize((1536, 1024), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, format="PNG")
    size, png = small.size, out.getvalue()
wall = time.perf_counter() - started
peak = HWM - baseline
print(wall, peak, size[0], size[1], len(png))
""".replace("HWM", _HWM)


def bench_prepare() -> Result:
    with tempfile.TemporaryDirectory() as folder:
        photo = Path(folder) / "24mp.jpg"
        img = Image.linear_gradient("L").resize((6000, 4000)).convert("RGB")
        ImageDraw.Draw(img).ellipse([1000, 800, 5000, 3600], fill=(200, 120, 40))
        img.save(photo, format="JPEG", quality=90)
        del img
        runs: dict[str, list[list[float]]] = {"varia": [], "naive": []}
        for _ in range(3):
            for way in ("varia", "naive"):
                out = subprocess.run(
                    [sys.executable, "-c", _PREPARE_PROBE, str(photo), way],
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split()
                runs[way].append([float(v) for v in out])
    ours, naive = (statistics.median(r[0] for r in runs[w]) for w in ("varia", "naive"))
    our_mem, naive_mem = (statistics.median(r[1] for r in runs[w]) for w in ("varia", "naive"))
    width, height, png_bytes = runs["varia"][0][2:5]
    speedup, memory = naive / ours, our_mem / naive_mem
    # Good enough for the services: the 3:2 shape kept, at least 3/4 of the 1536 px the models draw,
    # far above AI Vision's 50 px minimum and far below its 20 MB limit.
    good_output = 1152 <= width <= 1536 and abs(width / height - 1.5) < 0.01 and png_bytes < 20 * 1024 * 1024
    return Result(
        "prepare (24 MP JPEG)",
        f"speed-up {speedup:.1f}x, memory {memory:.2f}x",
        ">= 3x faster, <= 0.5x memory",
        speedup >= 3 and memory <= 0.5 and good_output,
        f"Varia {ours * 1000:.0f} ms / {our_mem / 1024:.0f} MB vs naive decode + resize + PNG {naive * 1000:.0f} ms / "
        f"{naive_mem / 1024:.0f} MB (peak RSS growth, median of 3); output {width:.0f}x{height:.0f} JPEG "
        f"{png_bytes / 1024:.0f} KB",
    )


# --- 4b. prepare, every format, one at a time and four at once -----------------------------------

_FORMATS_PROBE = """
import io, json, sys, time, threading
from PIL import Image, ImageOps
import shared.core.images as images
paths, way = sys.argv[1].split(","), sys.argv[2]
datas = [open(p, "rb").read() for p in paths]

def previous(data):  # decode every pixel, then orient, convert and fit: each step a full-size copy; PNG
    with Image.open(io.BytesIO(data)) as img:
        img.seek(0)
        img.load()
        ImageOps.exif_transpose(img, in_place=True)
        rgb = img if img.mode == "RGB" else images._to_rgb(img)
        rgb.thumbnail((images.MAX_SIDE, images.MAX_SIDE), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        rgb.save(out, format="PNG")

refused, prepared = [], []

def varia(data):
    try:
        prepared.append(images.normalize(data))
    except images.InvalidImage as exc:
        refused.append(str(exc))

run = varia if way == "varia" else previous
baseline = HWM
started = time.perf_counter()
threads = [threading.Thread(target=run, args=(d,)) for d in datas]
for t in threads:
    t.start()
for t in threads:
    t.join()
result = {"s": time.perf_counter() - started, "peak_kb": HWM - baseline, "refused": refused}
if len(prepared) == 1:  # what is stored, and (after the measure) what storing the same pixels as PNG costs
    p = prepared[0]
    result.update(bytes=len(p.data), type=p.content_type, size=[p.width, p.height])
    pixels = images.open_prepared(p.data)
    encoding = time.perf_counter()
    out = io.BytesIO()
    pixels.save(out, format="PNG")
    result.update(png_bytes=len(out.getvalue()), png_s=time.perf_counter() - encoding)
print(json.dumps(result))
""".replace("HWM", _HWM)


def _format_files(folder: Path) -> dict[str, Path]:
    """The files issue-sized sources come as: a noisy 24 MP photo and 64 MP images in every other format."""
    files = {}
    noise = Image.effect_noise((6000, 4000), 60).convert("RGB")
    files["24mp-noisy.jpg"] = folder / "24mp-noisy.jpg"
    noise.save(files["24mp-noisy.jpg"], format="JPEG", quality=90)
    del noise
    base = Image.linear_gradient("L").resize((8000, 8000))
    rgba = Image.merge("RGBA", (base, base.transpose(Image.Transpose.ROTATE_90), base, base))
    for name, image, fmt, options in (
        ("64mp-rgba.png", rgba, "PNG", {"compress_level": 1}),
        ("64mp-la.png", Image.merge("LA", (base, base)), "PNG", {"compress_level": 1}),
        ("64mp-lossless.webp", Image.new("RGB", (8000, 8000), (30, 120, 200)), "WEBP", {"lossless": True}),
        ("64mp.tiff", rgba.convert("RGB"), "TIFF", {"compression": "tiff_deflate"}),
        ("64mp.gif", base.convert("P"), "GIF", {}),
    ):
        files[name] = folder / name
        image.save(files[name], format=fmt, **options)
    return files


def _probe(paths: list[Path], way: str) -> dict[str, Any]:
    """One run of the probe in a fresh process: seconds, peak RSS growth (kB), refusals, what was stored."""
    out = subprocess.run(
        [sys.executable, "-c", _FORMATS_PROBE, ",".join(map(str, paths)), way],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def _prepare_line(name: str, run: dict[str, Any]) -> str:
    """The benchmark's line for one file, exactly as issue 11 asks."""
    return f"prepare: file={name} peak_mb={run['peak_kb'] / 1024:.0f} ms={run['s'] * 1000:.0f}"


# Four prepares at once: the four heaviest files Varia accepts (the 64 MP WebP is refused from its header).
FOUR_AT_ONCE = ("64mp-rgba.png", "64mp-la.png", "64mp.tiff", "64mp.gif")


def bench_prepare_formats() -> Result:
    with tempfile.TemporaryDirectory() as folder:
        files = _format_files(Path(folder))
        worst_peak, stored = 0.0, []
        for name, path in files.items():
            ours, before = _probe([path], "varia"), _probe([path], "previous")
            worst_peak = max(worst_peak, ours["peak_kb"] / 1024)
            print(_prepare_line(name, ours), flush=True)
            if ours["refused"]:
                what = f"refused from its header: {ours['refused'][0]}"
            else:
                width, height = ours["size"]
                what = (
                    f"stored {ours['type']} {width}x{height} {ours['bytes'] / 1024:.0f} KB; the same pixels as "
                    f"PNG (the previous storage): {ours['png_bytes'] / 1024:.0f} KB, "
                    f"{ours['png_s'] * 1000:.0f} ms to encode"
                )
                stored.append((name, ours))
            print(
                f"  {what}; before (full-size decode, then PNG): peak_mb={before['peak_kb'] / 1024:.0f} "
                f"ms={before['s'] * 1000:.0f}",
                flush=True,
            )
        four = [files[n] for n in FOUR_AT_ONCE]
        together, together_before = _probe(four, "varia"), _probe(four, "previous")
        print(_prepare_line("4-at-once", together), flush=True)
        print(
            f"  {', '.join(FOUR_AT_ONCE)} in 4 threads of one process; before: "
            f"peak_mb={together_before['peak_kb'] / 1024:.0f} ms={together_before['s'] * 1000:.0f}",
            flush=True,
        )
    together_mb = together["peak_kb"] / 1024
    photo = dict(stored)["24mp-noisy.jpg"]
    met = worst_peak <= 300 and together_mb <= 1536 and photo["type"] == "image/jpeg"
    return Result(
        "prepare (every format, 64 MP)",
        f"worst peak {worst_peak:.0f} MB; 4 at once {together_mb:.0f} MB",
        "each <= 300 MB; 4 at once <= 1.5 GB",
        met,
        f"peak RSS growth per prepare in a fresh process, against the previous way (full-size decode, then "
        f"orientation, conversion and fit on full-size copies): 4 at once {together_mb:.0f} MB vs "
        f"{together_before['peak_kb'] / 1024:.0f} MB. The noisy 24 MP photo is stored as a "
        f"{photo['bytes'] / 1024:.0f} KB JPEG where PNG took {photo['png_bytes'] / 1024:.0f} KB and "
        f"{photo['png_s'] * 1000:.0f} ms to encode",
    )


# --- 4c. first request: a fresh process, its imports and its first job, against a warm job ----------

# Through the CLI's own entry (`python -m shared.cli vary`), with nothing configured: offline
# providers, local storage in a temporary folder. The second job is another image of the same size
# (a new caption, nothing cached), run in the same process once everything is loaded.
_FIRST_REQUEST_PROBE = """
import contextlib, io, json, sys, time
started = time.perf_counter()
from shared.local.cli import main
imported = time.perf_counter()
import_kb = HWM
folder, first, second = sys.argv[1:4]

def job(image):
    out = io.StringIO()
    began = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(["vary", image, "as a watercolour", "--n", "2", "--out", folder])
    assert code == 0, out.getvalue()
    return time.perf_counter() - began

first_s = job(first)
first_kb = HWM
warm_s = job(second)
print(json.dumps({"import_s": imported - started, "first_s": first_s, "warm_s": warm_s,
                  "import_kb": import_kb, "first_kb": first_kb, "warm_kb": HWM}))
""".replace("HWM", _HWM)


def bench_first_request() -> Result:
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        sample = Image.open(REPO / "shared" / "local" / "assets" / "sample-meadow.png")
        first, second = Path(folder) / "first.png", Path(folder) / "second.png"
        sample.save(first)
        sample.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(second)
        for k in range(5):
            out = subprocess.run(
                [sys.executable, "-c", _FIRST_REQUEST_PROBE, str(Path(folder) / f"store-{k}"), str(first), str(second)],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
                env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},  # nothing configured: offline
            ).stdout
            runs.append(json.loads(out))

    def median(key: str) -> float:
        return statistics.median(run[key] for run in runs)

    import_ms, first_ms, warm_ms = median("import_s") * 1000, median("first_s") * 1000, median("warm_s") * 1000
    first_ratio, cold_ratio = first_ms / warm_ms, (import_ms + first_ms) / warm_ms
    print(
        f"first-request: import_ms={import_ms:.0f} first_job_ms={first_ms:.0f} warm_job_ms={warm_ms:.0f} "
        f"first/warm={first_ratio:.2f} (import+first)/warm={cold_ratio:.2f} "
        f"peak_mb={median('first_kb') / 1024:.0f} (after imports {median('import_kb') / 1024:.0f}, "
        f"after the warm job {median('warm_kb') / 1024:.0f})",
        flush=True,
    )
    return Result(
        "first request (fresh process, CLI, offline, n=2)",
        f"first job {first_ratio:.2f}x a warm job; with imports {cold_ratio:.2f}x",
        "recorded (issue 11 sets no goal); every job succeeds",
        True,  # each probe asserts its two jobs succeeded: a failure stops the benchmark
        f"median of 5 fresh processes: imports {import_ms:.0f} ms, first job {first_ms:.0f} ms, the next job (another "
        f"image, same size) {warm_ms:.0f} ms; peak RSS {median('first_kb') / 1024:.0f} MB after the first job "
        f"({median('import_kb') / 1024:.0f} MB after imports)",
    )


# --- 4d. word check, first use -------------------------------------------------------------------

# The first check in a process reads and folds every lexicon and compiles its patterns: the first
# compose on each instance pays it. "listed" spells every line phrase by phrase, as the lexicons were
# read before long lines were kept as their words.
_WORD_CHECK_PROBE = """
import glob, hashlib, json, random, sys, time
import shared.core.safety as s
PROFILES = ("kids", "general")
if sys.argv[1] == "listed":
    s._LISTED_PHRASES = 10**12
started = time.perf_counter()
refused = not s.check_text("film me for a tiktok jumping off the roof", "kids").allowed
refused &= not s.check_text("remove all the clothes from the woman", "general").allowed
passed = s.check_text("a dog on the beach at sunset, as a watercolour", "kids").allowed
first = time.perf_counter() - started
later = []
for text in ("a cat in a hat", "put this dog beside the Eiffel Tower at sunrise", "mets un chapeau au chat"):
    started = time.perf_counter()
    passed &= s.check_text(text, "kids").allowed
    later.append(time.perf_counter() - started)
later_s = sorted(later)[1]
texts = [json.loads(line)["text"] for f in sorted(glob.glob("tests/corpora/*.jsonl")) for line in open(f)]
random.Random(1).shuffle(texts)
for text in texts[:1500]:  # every pattern a text needs, compiled
    s.check_text(text, "kids"), s.check_text(text, "general")
passes = []
for _ in range(3):  # the fastest of three passes: a pass is a few seconds, and other work on the machine slows some
    started = time.perf_counter()
    for text in texts[1500:3000]:
        s.check_text(text, "kids"), s.check_text(text, "general")
    passes.append((time.perf_counter() - started) / 3000)
steady = min(passes)
peak = HWM
terms = sum(len(lang.terms) + len(lang.allow) for lang in s.languages().values())
verdicts = "-"
if sys.argv[2] == "verify":  # every corpus text's verdict and quoted term, both profiles, as one digest
    said = [(v.allowed, v.term) for text in sorted(texts) for v in map(s.check_text, [text] * 2, PROFILES)]
    verdicts = f"{len(texts)}:" + hashlib.sha256(repr(said).encode()).hexdigest()
print(first, later_s, peak, terms, refused and passed, steady, verdicts)
""".replace("HWM", _HWM)


def _word_check_run(way: str, verify: bool) -> tuple[tuple[float, float, float, int, float], str]:
    out = subprocess.run(
        [sys.executable, "-c", _WORD_CHECK_PROBE, way, "verify" if verify else "time"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    ).stdout.split()
    if out[4] != "True":
        raise AssertionError(f"the word check gave a wrong verdict when {way}")
    return (float(out[0]), float(out[1]), float(out[2]), int(out[3]), float(out[5])), out[6]


def bench_word_check_start() -> Result:
    """The first verdicts in a fresh process (a refusal in each profile, a kids pass), long lines kept
    as words against listed; the next checks, and warm ones. The first round also checks that both
    ways give every corpus text the same verdict and quoted term."""
    runs: dict[str, list[tuple[float, float, float, int, float]]] = {"words": [], "listed": []}
    verdicts: dict[str, str] = {}
    for k in range(3):  # interleaved, so both see the same machine state
        for way in runs:
            timed, said = _word_check_run(way, verify=k == 0)
            runs[way].append(timed)
            verdicts.setdefault(way, said)
    same = verdicts["words"] == verdicts["listed"]
    texts = verdicts["words"].split(":")[0]

    def median(way: str, index: int) -> float:
        return statistics.median(run[index] for run in runs[way])

    wall, rss = median("words", 0) / median("listed", 0), median("words", 2) / median("listed", 2)
    steady = median("words", 4) / median("listed", 4)
    print(
        f"word-check-start: first_s words={median('words', 0):.1f} listed={median('listed', 0):.1f} ratio={wall:.2f} "
        f"peak_mb words={median('words', 2) / 1024:.0f} listed={median('listed', 2) / 1024:.0f} ratio={rss:.2f} "
        f"steady_ms words={median('words', 4) * 1000:.2f} listed={median('listed', 4) * 1000:.2f} ratio={steady:.2f} "
        f"verdicts of {texts} texts same={same}",
        flush=True,
    )
    return Result(
        "word check, first use (fresh process, both profiles)",
        f"wall {wall:.2f}, peak RSS {rss:.2f}; a warm check {steady:.2f}",
        "<= 0.5 both; warm <= 1.2; the same verdicts",
        same and wall <= 0.5 and rss <= 0.5 and steady <= 1.2,
        f"median of 3 fresh processes each way: {median('words', 0):.1f} s and {median('words', 2) / 1024:.0f} MB "
        f"with long lines kept as words ({runs['words'][0][3]} listed terms), against {median('listed', 0):.1f} s and "
        f"{median('listed', 2) / 1024:.0f} MB with every line listed ({runs['listed'][0][3]} terms); the next checks "
        f"(a phrase's pattern compiled when a text first has its first word) {median('words', 1) * 1000:.0f} ms "
        f"against {median('listed', 1) * 1000:.0f} ms; warm (the fastest of three passes over 1,500 corpus texts in "
        f"both profiles) "
        f"{median('words', 4) * 1000:.2f} ms a check against {median('listed', 4) * 1000:.2f} ms; the verdicts and "
        f"quoted terms of all {texts} corpus texts in both profiles are "
        + ("the same both ways" if same else "NOT the same both ways"),
    )


# --- 5. cost ------------------------------------------------------------------------------------


def bench_cost() -> Result:
    with FakeAzureAI() as fake, tempfile.TemporaryDirectory() as folder:
        fake.image_size_override = (64, 64)
        services = services_for(fake, folder, VARIA_IMAGE_REQUESTS_PER_MINUTE="60000")
        runtime = make_runtime(services)
        image = picture(11)

        def post(prompt: str, profile: str = "general", n: int = 3) -> str:
            body = json.dumps(
                {"image": base64.b64encode(image).decode(), "prompt": prompt, "profile": profile, "n": n}
            ).encode()
            request = func.HttpRequest(
                "POST", "/api/variations", headers={"Content-Type": "application/json"}, body=body
            )
            job_id: str = json.loads(asyncio.run(post_variation(request, runtime, services)).get_body())["job_id"]
            runtime._instances[job_id].done.wait(60)
            return job_id

        def paid() -> dict[str, int]:
            return {r: fake.paid(r) for r in ("vision.analyze", "chat", "images.edit")}

        first = post("as a watercolour")
        after_first = paid()
        manifest = runtime._instances[first].output
        delivered = sum(1 for v in manifest["variations"] if v["status"] == "succeeded")
        post("as a watercolour")  # identical request
        after_repeat = paid()
        post("with a bloody sword", profile="kids")
        after_refused = paid()
        post("as pop art", n=1)  # the same image, another prompt
        after_seen = paid()
        runtime.shutdown()
    per_image = after_first["images.edit"] / delivered
    repeat = sum(after_repeat.values()) - sum(after_first.values())
    refused_images = after_refused["images.edit"] - after_repeat["images.edit"]
    seen_captions = after_seen["vision.analyze"] - after_refused["vision.analyze"]
    met = per_image == 1.0 and repeat == 0 and refused_images == 0 and seen_captions == 0
    return Result(
        "cost (fake server call log)",
        f"{per_image:.1f} image calls per image",
        "1.0; repeat 0; refused 0 images; seen image 0 captions",
        met,
        f"repeated identical job: {repeat} paid calls; refused job: {refused_images} image calls; image seen "
        f"before: {seen_captions} caption calls; first job's manifest: paid {manifest['paid_calls']}, "
        f"estimated ${manifest['estimated_cost_usd']:.4f}",
    )


def bench_scale() -> Result:
    """100 jobs x n=3 on 1, 2 and 4 instances (processes) sharing Azurite and one quota: see bench/scale.py."""
    from bench import scale

    met = scale.run_all(100, 3, [1, 2, 4])
    return Result(
        "scale (100 jobs x 3, 1/2/4 instances)",
        "see the scale: lines",
        "failed=0, rejected <= 5%, quota_use >= 0.95",
        met,
        "instances are processes sharing Azurite and one deployment (6 a minute over 10 s windows, 30 and 60 s "
        "images, time-scaled by 5); the last run gives each of 4 instances a schedule of its own, as pacing in "
        "each process did",
    )


BENCHES: dict[str, Callable[[], Result]] = {
    "critical-path": bench_critical_path,
    "quota": bench_quota,
    "cold-start": bench_cold_start,
    "prepare": bench_prepare,
    "prepare-formats": bench_prepare_formats,
    "first-request": bench_first_request,
    "word-check-start": bench_word_check_start,
    "cost": bench_cost,
    "scale": bench_scale,
}


def main(names: list[str]) -> int:
    chosen = names or list(BENCHES)
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    results = []
    for name in chosen:
        started = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results.append(BENCHES[name]())
        print(f"  done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    print("| benchmark | measured | goal | met |\n|---|---|---|---|")
    for r in results:
        print(f"| {r.name} | {r.measured} | {r.goal} | {'yes' if r.met else 'NO'} |")
    print()
    for r in results:
        print(f"- **{r.name}**: {r.details}")
    return 0 if all(r.met for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
