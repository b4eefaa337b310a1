"""Peak memory of a whole run of one shot, short against long: it must not grow with the shot.

Each case is a synthetic shot (a textured background panning under a red disc that moves and
breathes) written as a ProRes 422 HQ camera original, cut into an OTIO timeline with a
`recolor` request ("red to blue"), and run by the pipeline in a **fresh process**: ingest →
keyframes (`recolor`) → auto-approved review → render (CPU `flow`) → conform, on the default
settings (81-frame chunks, 16 frames of overlap, a keyframe every 10 frames). The footage is
made in this (the parent) process, one frame at a time, so the measured process only runs the
pipeline. Per case:

- `peak_rss_mb`: the run's process, `getrusage(RUSAGE_SELF).ru_maxrss` at its end (Python,
  numpy, OpenCV and the store included);
- `ffmpeg_peak_rss_mb`: the largest ffmpeg it ran (decoders and encoders), reported apart. The
  run's own `RUSAGE_CHILDREN` cannot tell it: Linux counts a child's high-water mark from before
  its `exec`, i.e. the Python process it was forked (or vforked) from. So the run is pointed
  (`STUDIO_NOVA_FFMPEG`) at a small launcher that runs the real ffmpeg as its own child and
  records that child's `RUSAGE_CHILDREN.ru_maxrss` (exact, give or take the launcher's ~10 MB);
- the run's seconds and the shot's status.

Pairs of the same frame size (short, long) are run side by side and their ratio (long / short)
reported; the promise is that it stays near 1 (target ≤ 1.25).

    python3 -m studio_nova_benchmarks.memory [--quick] [--sizes 320x180 1920x1080] \\
        [--work /tmp/nova-memory] [--json-out benchmarks/results/memory.json]

Default pairs: 300 and 3,000 frames at 320×180, 100 and 1,000 frames at 1920×1080 (about 15–25
minutes on 2 cores, most of it the long 1080p render). `--quick`: 320×180 only, 300 and 1,500
frames. `--frames SIZE=SHORT,LONG` overrides a pair.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

RATE = 25.0
EDIT = {"instruction": "red to blue", "editor": "recolor"}
PAIRS: dict[str, tuple[int, int]] = {"320x180": (300, 3000), "1920x1080": (100, 1000)}
QUICK: dict[str, tuple[int, int]] = {"320x180": (300, 1500)}
TARGET_RATIO = 1.25
RESULTS = Path(__file__).resolve().parent / "results" / "memory.json"


# --- footage, made one frame at a time -------------------------------------------------------------


def synthetic_frames(frames: int, width: int, height: int, seed: int = 3) -> Iterator[np.ndarray]:
    """uint8 RGB frames of a panning textured background under a moving red disc, one at a time
    (memory: one frame and a texture twice the frame's size, whatever the length)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((max(2, height // 24), max(2, width // 12), 3)).astype(np.float32)
    import cv2

    texture = cv2.resize(coarse, (2 * width, height), interpolation=cv2.INTER_CUBIC)
    texture = np.clip(0.25 + 0.35 * texture * np.array([0.6, 0.9, 0.7], np.float32), 0.0, 1.0)
    grain = rng.normal(0.0, 0.01, (height, 2 * width, 3)).astype(np.float32)
    base = (np.clip(texture + grain, 0.0, 1.0) * 255.0).astype(np.uint8)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    radius0 = 0.18 * min(width, height)
    for t in range(frames):
        phase = 2.0 * np.pi * t / 97.0
        shift = int(np.rint((width / 2) * (1.0 + np.sin(2.0 * np.pi * t / 250.0))))  # the camera pans to and fro
        frame = base[:, shift : shift + width].copy()
        cx = width * (0.5 + 0.3 * np.sin(phase))
        cy = height * (0.5 + 0.2 * np.cos(1.3 * phase))
        radius = radius0 * (1.0 + 0.15 * np.sin(3.0 * phase))
        alpha = np.clip(radius - np.hypot(xx - cx, yy - cy), 0.0, 1.0)[..., None]
        disc = np.array([200.0, 40.0, 35.0], np.float32)
        frame = (frame * (1.0 - alpha) + disc * alpha).astype(np.uint8)
        yield frame


def write_media(path: Path, frames: int, width: int, height: int) -> Path:
    from studio_nova.media.encode import VideoWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, width=width, height=height, rate=RATE, codec="prores_hq", input_dtype=np.uint8) as writer:
        for frame in synthetic_frames(frames, width, height):
            writer.write(frame)
    return path


def write_cut(path: Path, media: Path, frames: int) -> Path:
    import opentimelineio as otio

    span = otio.opentime.TimeRange(otio.opentime.RationalTime(0, RATE), otio.opentime.RationalTime(frames, RATE))
    clip = otio.schema.Clip(
        name=media.stem,
        media_reference=otio.schema.ExternalReference(target_url=str(media), available_range=span),
        source_range=span,
    )
    clip.metadata["studio_nova"] = {"edit": dict(EDIT)}
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    track.append(clip)
    timeline = otio.schema.Timeline(name=path.stem)
    timeline.tracks.append(track)
    otio.adapters.write_to_file(timeline, str(path))
    return path


# --- the measured process ----------------------------------------------------------------------------

# Runs the real ffmpeg as its child (killed with the launcher), then appends that child's peak
# RSS (KiB) to the log; passes the exit status (or the signal) on.
LAUNCHER = """#!{python} -S
import ctypes, os, resource, signal, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
child = subprocess.Popen([{ffmpeg!r}] + sys.argv[1:], preexec_fn=lambda: libc.prctl(1, signal.SIGKILL))
for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda s, f: child.send_signal(s))
code = child.wait()
with open({log!r}, "a") as log:
    log.write(f"{{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}}\\n")
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


def write_launcher(folder: Path) -> tuple[Path, Path]:
    """An ffmpeg launcher that records each ffmpeg's peak RSS, and the log it writes."""
    from studio_nova.media.ffmpeg_bin import ffmpeg_exe

    folder.mkdir(parents=True, exist_ok=True)
    launcher, log = folder / "ffmpeg", folder / "ffmpeg_maxrss.log"
    log.write_text("")
    launcher.write_text(LAUNCHER.format(python=sys.executable, ffmpeg=ffmpeg_exe(), log=str(log)))
    launcher.chmod(0o755)
    return launcher, log


def run_child(cut: Path, out: Path) -> dict:
    """Run the whole pipeline on `cut` in this process; what it used."""
    from studio_nova import workflow
    from studio_nova.config import load_settings

    started = time.perf_counter()
    ws = workflow.Workspace.open(out, load_settings())
    try:
        shots = workflow.run_cut(ws, cut, auto_approve=True).to_dict()["shots"]
    finally:
        ws.close()
    seconds = time.perf_counter() - started
    [shot] = shots
    return {
        "status": shot["status"],
        "error": shot.get("error"),
        "chunks": (shot.get("qc") or {}).get("chunks"),
        "seconds": round(seconds, 1),
        "peak_rss_mb": _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
    }


def _mb(kilobytes: int) -> float:
    return round(kilobytes / 1024.0, 1)  # ru_maxrss is in KiB on Linux


def measure(work: Path, width: int, height: int, frames: int) -> dict:
    """Make the footage here, run the pipeline on it in a fresh Python process, and read back
    what that process reports."""
    folder = work / f"{width}x{height}_{frames}"
    media = folder / "media" / f"M{frames:05d}.mov"
    made = time.perf_counter()
    if not media.exists():
        write_media(media, frames, width, height)
    cut = write_cut(folder / "cut.otio", media, frames)
    footage_seconds = time.perf_counter() - made
    out = folder / "run"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    launcher, log = write_launcher(folder / "bin")
    command = [sys.executable, "-m", "studio_nova_benchmarks.memory", "--child", str(cut), str(out)]
    env = {**os.environ, "STUDIO_NOVA_FFMPEG": str(launcher)}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        return {"frames": frames, "status": "error", "error": done.stderr.strip()[-2000:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    runs = [int(line) for line in log.read_text().split()]
    result["ffmpeg_peak_rss_mb"] = _mb(max(runs, default=0))
    result["ffmpeg_runs"] = len(runs)
    return {"frames": frames, **result, "footage_seconds": round(footage_seconds, 1)}


def run(pairs: dict[str, tuple[int, int]], work: Path) -> dict:
    from studio_nova.config import Settings

    settings = Settings()
    sizes = {}
    for size, (short, long) in pairs.items():
        width, height = (int(v) for v in size.lower().split("x"))
        cases = []
        for frames in (short, long):
            case = measure(work, width, height, frames)
            print(json.dumps({"size": size, **case}), file=sys.stderr, flush=True)
            cases.append(case)
        ok = all(c.get("status") == "conformed" for c in cases)
        sizes[size] = {
            "cases": cases,
            "ratio_peak_rss": round(cases[1]["peak_rss_mb"] / cases[0]["peak_rss_mb"], 3) if ok else None,
            "ratio_ffmpeg_peak_rss": round(cases[1]["ffmpeg_peak_rss_mb"] / cases[0]["ffmpeg_peak_rss_mb"], 3)
            if ok and cases[0]["ffmpeg_peak_rss_mb"] else None,
        }
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {_total_memory()}, Python {platform.python_version()}",
        "settings": {
            "editor": EDIT["editor"],
            "instruction": EDIT["instruction"],
            "backend": settings.backend,
            "chunk_length": settings.chunk_length,
            "chunk_overlap": settings.chunk_overlap,
            "keyframe_interval": settings.keyframe_interval,
            "source_codec": "prores_hq 8-bit",
            "rate": RATE,
        },
        "target_ratio": TARGET_RATIO,
        "sizes": sizes,
    }


def _total_memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    return "RAM unknown"


def _pair(text: str) -> tuple[str, tuple[int, int]]:
    size, _, counts = text.partition("=")
    short, long = (int(v) for v in counts.split(","))
    return size, (short, long)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=2, metavar=("CUT", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="320x180 only, 300 and 1,500 frames")
    parser.add_argument("--sizes", nargs="*", help="frame sizes to run (default: every pair)")
    parser.add_argument("--frames", action="append", default=[], type=_pair, metavar="SIZE=SHORT,LONG")
    parser.add_argument("--work", type=Path, default=None, help="where footage and runs go (default: a temp folder)")
    parser.add_argument("--json-out", type=Path, default=None, help=f"default: {RESULTS} (not with --quick)")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(Path(args.child[0]), Path(args.child[1]))))
        return 0
    pairs = dict(QUICK if args.quick else PAIRS)
    pairs.update(dict(args.frames))
    if args.sizes:
        pairs = {size: pairs[size] for size in args.sizes}
    with tempfile.TemporaryDirectory(prefix="nova-memory-") as scratch:
        report = run(pairs, args.work or Path(scratch))
    report["quick"] = bool(args.quick)
    text = json.dumps(report, indent=2)
    print(text)
    json_out = args.json_out or (None if args.quick else RESULTS)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n")
    ratios = [s["ratio_peak_rss"] for s in report["sizes"].values()]
    return 0 if all(r is not None for r in ratios) else 1


if __name__ == "__main__":
    raise SystemExit(main())
