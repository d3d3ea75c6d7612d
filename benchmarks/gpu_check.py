"""Everything this project checks and measures on a CUDA GPU, in one run.

    python benchmarks/gpu_check.py --out benchmarks/results/gpu --reference-dir .ref/XMem

1. ``pytest -m cuda`` (tests/test_cuda.py): the golden run on CUDA, CPU = CUDA masks, half precisions,
   resume states across devices, AMP training, ``--device auto``. Log: ``pytest_cuda.log``.
2. The memory readout kernels at 480p sizes (embedding_bag, sparse CSR, dense).
3. The official architecture (random official-layout weights, the golden rule) at 480×854, 2 and 5
   objects, 300 frames of a synthetic video (benchmarks/common.py) held in memory as decoded frames:
   the engine alone (``step`` and the index mask brought to the CPU, after a 20-frame warm-up) in fp32,
   tf32, bf16 and fp16: frames/s, peak allocated memory, pixel agreement with fp32.
4. The embedded default model on the same video and on the demo's real clip (demo/cup.mp4).
5. The whole ``xmem segment`` process on that video encoded as H.264 (decoding and PNG writing included).
6. The reference engine (hkchengrex/XMem, ``--reference-dir``, optional) on the same frames, fp32 and AMP.
7. A long video: 5,000 frames (the 300 played back and forth), bf16: allocated memory per frame
   (``long_video.csv``).
8. ``torch.compile`` variants, while ``--budget-s`` lasts.

Writes ``gpu_check.json`` (everything) and the files above into ``--out``; prints a summary table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from common import SyntheticVideo  # noqa: E402
from xmem.config import InferenceConfig, Precision  # noqa: E402
from xmem.inference import numerics as numerics_module  # noqa: E402
from xmem.inference.core import InferenceCore  # noqa: E402
from xmem.inference.numerics import autotunes  # noqa: E402
from xmem.inference.segmenter import index_mask_from_probabilities  # noqa: E402
from xmem.io.atomic import atomic_write  # noqa: E402

MIB = 1 << 20
T0 = time.monotonic()
DEVICE = "cuda"  # --device cpu: a quick smoke run of the script itself where no GPU is
HEIGHT, WIDTH = 480, 854


def on_cuda() -> bool:
    return DEVICE.startswith("cuda")


def sync() -> None:
    if on_cuda():
        torch.cuda.synchronize()


def reset_peak() -> None:
    if on_cuda():
        torch.cuda.reset_peak_memory_stats()


def peak_mib() -> float:
    return round(torch.cuda.max_memory_allocated() / MIB, 1) if on_cuda() else 0.0


def allocated_mib() -> float:
    return round(torch.cuda.memory_allocated() / MIB, 2) if on_cuda() else 0.0


def log(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


def environment() -> dict:
    if not on_cuda():
        return {"device": DEVICE, "torch": torch.__version__}
    props = torch.cuda.get_device_properties(0)
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), "")
    return {
        "gpu": torch.cuda.get_device_name(0),
        "capability": f"{props.major}.{props.minor}",
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "nvidia_smi": smi,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
    }


# -- 1. tests -----------------------------------------------------------------------------------------------
def run_tests(out: Path) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-p", "no:cacheprovider", "-rs", "tests"]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    text = proc.stdout + proc.stderr
    with atomic_write(out / "pytest_cuda.log", "w") as f:
        f.write(text)
    counts = [line for line in text.splitlines() if re.search(r"\d+ (passed|failed|skipped|errors?)\b", line)]
    summary = counts[-1].strip("= ") if counts else ""
    return {"returncode": proc.returncode, "summary": summary, "seconds": round(time.monotonic() - start, 1)}


# -- 2. readout kernels -------------------------------------------------------------------------------------
def time_cuda(fn, repeat: int = 20) -> float:
    """Median milliseconds of ``fn`` (synchronised before and after), after 3 warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def readout_kernels() -> dict:
    import torch.nn.functional as F

    m, n, k, d = 30 * 54, 16200 + 10000, 30, 2 * 512  # 480×864 at stride 16, full memory, 2 objects
    g = torch.Generator(device=DEVICE).manual_seed(0)
    sim = torch.randn(m, n, device=DEVICE, generator=g)
    values = torch.randn(n, d, device=DEVICE, generator=g)
    w, idx = torch.topk(sim, k, dim=1, sorted=False)
    w = torch.softmax(w, dim=1)

    def csr():
        crow = torch.arange(0, m * k + 1, k, device=DEVICE, dtype=torch.int64)
        a = torch.sparse_csr_tensor(crow, idx.flatten(), w.flatten(), size=(m, n), check_invariants=False)
        return a @ values

    def bag():
        return F.embedding_bag(idx, values, per_sample_weights=w, mode="sum")

    def dense():
        return torch.zeros(m, n, device=DEVICE).scatter_(1, idx, w) @ values

    ref = dense()
    out = {"shape": {"queries": m, "memory": n, "top_k": k, "channels": d}}
    for name, fn in (("embedding_bag", bag), ("sparse_csr", csr), ("dense", dense)):
        out[name] = {"ms": round(time_cuda(fn), 4), "max_abs_diff": float((fn() - ref).abs().max())}
    out["similarity_and_topk_ms"] = round(
        time_cuda(
            lambda: torch.topk(torch.randn(m, 129, device=DEVICE) @ torch.randn(129, n, device=DEVICE), k)
        ),
        4,
    )
    return out


# -- 3.-4. the engine alone ---------------------------------------------------------------------------------
def engine_run(
    model,
    config: InferenceConfig,
    frames: list[np.ndarray],
    mask0: np.ndarray,
    *,
    warmup: int = 20,
    core=None,
) -> tuple[dict, np.ndarray]:
    """The engine over ``frames`` (decoded frames in host memory), after ``warmup`` frames run and forgotten
    (cuDNN autotuning, compilation). Per frame: ``step`` and the index mask brought to the CPU."""
    core = core or InferenceCore(model, config)
    start = time.perf_counter()
    for t in range(min(warmup, len(frames))):
        prob = core.step(frames[t], mask0 if t == 0 else None)
        index_mask_from_probabilities(prob, core.objects)
    sync()
    warmup_s = time.perf_counter() - start
    core.reset()
    reset_peak()
    n = len(frames)
    masks = np.empty((n, *frames[0].shape[:2]), np.uint8)
    times = []
    start = time.perf_counter()
    for t, frame in enumerate(frames):
        prob = core.step(frame, mask0 if t == 0 else None, end=t == n - 1)
        masks[t] = index_mask_from_probabilities(prob, core.objects)
        now = time.perf_counter()
        times.append(now - start)
        start = now
    result = {
        "fps": round((n - 1) / sum(times[1:]), 2),
        "fps_from_frame_50": round((n - 50) / sum(times[50:]), 2) if n > 60 else None,
        "median_ms": round(1000 * statistics.median(times[1:]), 2),
        "peak_allocated_mib": peak_mib(),
        "warmup_s": round(warmup_s, 2),
        "first_frame_ms": round(1000 * times[0], 2),
    }
    return result, masks


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return round(float((a == b).mean()), 5)


def synthetic(frames: int, objects: int) -> tuple[list[np.ndarray], np.ndarray]:
    video = SyntheticVideo(frames, HEIGHT, WIDTH, objects, seed=0)
    return [video.frame_and_mask(t)[0] for t in range(frames)], video.mask(0)


def official_speed(model, frames_by_objects: dict, results: dict) -> dict[int, np.ndarray]:
    fp32_masks = {}
    for objects, (frames, mask0) in frames_by_objects.items():
        for precision in (Precision.FP32, Precision.TF32, Precision.BF16, Precision.FP16):
            config = InferenceConfig(size=-1, device=DEVICE, precision=precision)
            res, masks = engine_run(model, config, frames, mask0)
            if precision is Precision.FP32:
                fp32_masks[objects] = masks
            res["agreement_with_fp32"] = agreement(masks, fp32_masks[objects])
            results[f"official/{objects}obj/{precision.value}"] = res
            log(f"official {objects} objects {precision.value}: {res}")
    # the other choice of cuDNN autotuning (the engine: on for fp32 / tf32, off for bf16 / fp16)
    frames, mask0 = frames_by_objects[2]
    for precision in (Precision.BF16, Precision.FP32):
        config = InferenceConfig(size=-1, device=DEVICE, precision=precision)
        turned_on = not autotunes(precision)
        saved = numerics_module.autotunes
        numerics_module.autotunes = lambda p: turned_on  # noqa: B023
        try:
            res, _ = engine_run(model, config, frames, mask0)
        finally:
            numerics_module.autotunes = saved
        key = f"official/2obj/{precision.value}/cudnn_autotune_{'on' if turned_on else 'off'}"
        results[key] = res
        log(f"{key}: {res}")
    return fp32_masks


def default_model_speed(frames: list[np.ndarray], mask0: np.ndarray, results: dict) -> None:
    from xmem.model.checkpoint import load_model

    model = load_model()
    for size in (None, -1):  # its own size (240), the video's (480)
        base = None
        for precision in (Precision.FP32, Precision.BF16, Precision.FP16):
            config = InferenceConfig(size=size, device=DEVICE, precision=precision)
            res, masks = engine_run(model, config, frames, mask0)
            base = masks if base is None else base
            res["agreement_with_fp32"] = agreement(masks, base)
            key = f"default_model/2obj/size{'_video' if size == -1 else '_default'}/{precision.value}"
            results[key] = res
            log(f"{key}: {res}")


def cup_clip(results: dict) -> None:
    """The default model on the demo's real clip: precisions' agreement, and J / F on its hand-checked frames
    (demo/cup-annotations, as benchmarks/demo_quality.py scores them)."""
    from xmem.io.masks import read_index_mask
    from xmem.io.video import VideoFile
    from xmem.metrics import region_and_boundary
    from xmem.model.checkpoint import load_model

    frames = list(VideoFile(ROOT / "demo" / "cup.mp4"))
    mask0 = read_index_mask(ROOT / "demo" / "cup-mask.png")
    annotated = {
        int(p.stem): read_index_mask(p) for p in sorted((ROOT / "demo" / "cup-annotations").glob("*.png"))
    }
    model = load_model()
    base = None
    for precision in (Precision.FP32, Precision.TF32, Precision.BF16, Precision.FP16):
        config = InferenceConfig(device=DEVICE, precision=precision)
        res, masks = engine_run(model, config, frames, mask0)
        base = masks if base is None else base
        res["agreement_with_fp32"] = agreement(masks, base)
        scores = [
            region_and_boundary(gt == 1, masks[i] == 1) for i, gt in annotated.items() if i < len(masks)
        ]
        res["j"] = round(100 * float(np.mean([np.asarray(j).ravel()[0] for j, _ in scores])), 2)
        res["f"] = round(100 * float(np.mean([np.asarray(f).ravel()[0] for _, f in scores])), 2)
        results[f"cup/{precision.value}"] = res
        log(f"cup {precision.value}: {res}")


# -- 5. the whole command ----------------------------------------------------------------------------------
def whole_command(frames: list[np.ndarray], mask0: np.ndarray, work: Path, results: dict) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import write_video
    from xmem.io.masks import write_index_mask
    from xmem.model.golden import golden_rule_state_dict

    work.mkdir(parents=True, exist_ok=True)
    video = write_video(work / "clip.mp4", frames, fps=25)
    write_index_mask(work / "mask.png", mask0)
    torch.save(golden_rule_state_dict(), work / "golden.pth")
    for precision in ("bf16", "fp32"):
        out = work / f"masks-{precision}"
        cmd = [
            sys.executable, "-m", "xmem", "segment", str(video), "--mask", str(work / "mask.png"),
            "--out", str(out), "--weights", str(work / "golden.pth"), "--size", "-1",
            "--precision", precision, "--device", DEVICE, "--quiet", "--overwrite",
        ]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            results[f"xmem_segment/{precision}"] = {"error": proc.stderr[-2000:]}
            log(f"xmem segment {precision} failed: {proc.stderr[-2000:]}")
            continue
        summary = json.loads((out / "summary.json").read_text())
        res = {
            "fps": summary["frames_per_second"],
            "elapsed_s": summary["elapsed_s"],
            "process_wall_s": round(wall, 2),
            "frames": summary["frames"],
            "peak_memory_mib": summary["peak_memory_mib"],
            "settings": summary["settings"],
        }
        results[f"xmem_segment/{precision}"] = res
        log(f"xmem segment {precision}: {res}")


# -- 6. the reference ---------------------------------------------------------------------------------------
def reference(reference_dir: Path, frames: int, work: Path, fp32_masks: np.ndarray, results: dict) -> None:
    for amp in (False, True):
        masks_path = work / f"reference-{'amp' if amp else 'fp32'}.npy"
        cmd = [
            sys.executable, str(HERE / "reference_runner.py"), "--reference-dir", str(reference_dir),
            "--device", DEVICE, "--prerender", "--warmup", "20", "--frames", str(frames), "--height", str(HEIGHT),
            "--width", str(WIDTH), "--objects", "2", "--threads", str(os.cpu_count() or 1),
            "--save-masks", str(masks_path), *(["--amp"] if amp else []),
        ]  # fmt: skip
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
        key = f"reference/2obj/{'amp_fp16' if amp else 'fp32_default_tf32_convs'}"
        if proc.returncode != 0:
            results[key] = {"error": proc.stderr[-2000:]}
            log(f"{key} failed: {proc.stderr[-2000:]}")
            continue
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        times = data["frame_seconds"]
        res = {
            "fps": round(data["fps"], 2),
            "fps_from_frame_50": round((len(times) - 50) / sum(times[50:]), 2) if len(times) > 60 else None,
            "median_ms": round(1000 * statistics.median(times[1:]), 2),
            "peak_allocated_mib": round(data.get("peak_gpu_allocated_mb", 0.0), 1),
            "agreement_with_our_fp32": agreement(np.load(masks_path), fp32_masks),
        }
        results[key] = res
        log(f"{key}: {res}")


# -- 7. a long video ----------------------------------------------------------------------------------------
def long_video(
    model, frames: list[np.ndarray], mask0: np.ndarray, length: int, out: Path, results: dict
) -> None:
    config = InferenceConfig(size=-1, device=DEVICE, precision=Precision.BF16)
    core = InferenceCore(model, config)
    for t in range(min(20, len(frames))):  # warm-up, forgotten
        core.step(frames[t], mask0 if t == 0 else None)
    core.reset()
    sync()
    reset_peak()
    period = 2 * (len(frames) - 1)
    rows = []
    start = time.perf_counter()
    for i in range(length):
        p = i % period
        t = p if p < len(frames) else period - p  # back and forth
        prob = core.step(frames[t], mask0 if i == 0 else None, end=i == length - 1)
        index_mask_from_probabilities(prob, core.objects)  # brings the mask to the CPU: synchronises
        now = time.perf_counter()
        rows.append(
            (i, round(now - start, 5), allocated_mib(), core.memory.work.size,
             core.memory.long.size)
        )  # fmt: skip
        start = now
    with atomic_write(out / "long_video.csv", "w") as f:
        f.write("index,seconds,allocated_mib,working_elements,long_term_elements\n")
        f.writelines(",".join(str(v) for v in row) + "\n" for row in rows)
    mark = min(1000, length) - 1
    at_1000 = rows[mark][2]
    end = rows[-1][2]
    res = {
        "frames": length,
        "fps": round((length - 1) / sum(r[1] for r in rows[1:]), 2),
        "allocated_mib_at_1000": at_1000,
        "allocated_mib_at_end": end,
        "change_from_1000": round((end - at_1000) / at_1000, 4) if at_1000 else None,
        "max_allocated_mib_after_1000": max(r[2] for r in rows[mark:]),
        "peak_allocated_mib": peak_mib(),
        "long_term_elements_at_end": rows[-1][4],
    }
    results["long_video/official/2obj/bf16"] = res
    log(f"long video: {res}")


# -- 8. compilation -----------------------------------------------------------------------------------------
def compiled(model, frames_by_objects, fp32_masks, budget_s: float, results: dict) -> None:
    variants = [(2, Precision.BF16, "reduce-overhead"), (2, Precision.BF16, "default"), (2, Precision.FP32, "default"),
                (5, Precision.BF16, "default"), (2, Precision.FP16, "default"), (2, Precision.TF32, "default")]  # fmt: skip
    for objects, precision, mode in variants:
        if time.monotonic() - T0 > budget_s:
            results[f"compiled/{objects}obj/{precision.value}/{mode}"] = {"skipped": "time budget"}
            continue
        frames, mask0 = frames_by_objects[objects]
        config = InferenceConfig(size=-1, device=DEVICE, precision=precision)
        core = InferenceCore(model, config)
        net = core.network
        core._encode_key, core._segment, core._encode_value = (
            torch.compile(call, dynamic=False, mode=mode)
            for call in (net.encode_key, net.segment, net.encode_value)
        )
        eager = results[f"official/{objects}obj/{precision.value}"]
        try:
            res, masks = engine_run(model, config, frames, mask0, core=core)
        except Exception as exc:  # report and go on: one variant must not cost the others
            results[f"compiled/{objects}obj/{precision.value}/{mode}"] = {"error": repr(exc)[-2000:]}
            log(f"compiled {objects} {precision.value} {mode} failed: {exc!r}"[-2000:])
            continue
        res["agreement_with_fp32"] = agreement(masks, fp32_masks[objects])
        res["speed_up_over_eager"] = round(res["fps"] / eager["fps"], 3)
        results[f"compiled/{objects}obj/{precision.value}/{mode}"] = res
        log(f"compiled {objects} objects {precision.value} {mode}: {res}")


def plot_long_video(csv_path: Path, png: Path) -> None:
    """Allocated GPU memory and the memory sizes over the long video's frames (from ``long_video.csv``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.genfromtxt(csv_path, delimiter=",", names=True)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    top.plot(data["index"], data["allocated_mib"], lw=0.6, color="tab:blue")
    top.set_ylabel("allocated GPU memory (MiB)")
    top.set_title("official network, bf16, 480×854, 2 objects, 5,000 frames (300 played back and forth)")
    bottom.plot(data["index"], data["long_term_elements"], lw=0.8, label="long-term", color="tab:green")
    bottom.plot(data["index"], data["working_elements"], lw=0.4, label="working", color="tab:orange")
    bottom.set_ylabel("memory elements")
    bottom.set_xlabel("frame")
    bottom.legend(loc="lower right")
    fig.tight_layout()
    with atomic_write(png) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gpu")
    parser.add_argument("--work", type=Path, default=Path("/tmp/xmem-gpu-check"))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--long-frames", type=int, default=5000)
    parser.add_argument("--reference-dir", type=Path, help="a checkout of hkchengrex/XMem (optional)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="no compile variant starts after this")
    parser.add_argument("--skip", nargs="*", default=[], help="phases to leave out (tests readout official "
                        "default cup segment reference long compile)")  # fmt: skip
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu: a smoke run of this script")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--plot-long", type=Path, metavar="CSV", help="only draw long_video.png from a CSV")
    args = parser.parse_args()
    if args.plot_long is not None:
        plot_long_video(args.plot_long, args.plot_long.with_suffix(".png"))
        return
    global DEVICE, HEIGHT, WIDTH
    DEVICE, HEIGHT, WIDTH = args.device, args.height, args.width
    if on_cuda() and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible: this script measures the CUDA path")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"environment": environment(), "command": " ".join(sys.argv)}

    def save() -> None:
        with atomic_write(args.out / "gpu_check.json", "w") as f:
            json.dump(results, f, indent=1)

    def phase(name: str, fn, *a) -> None:
        if name in args.skip:
            return
        log(f"-- {name}")
        try:
            fn(*a)
        except Exception as exc:  # one phase's failure must not cost the others
            import traceback

            results[f"{name}/error"] = traceback.format_exc()[-3000:]
            log(f"{name} failed: {exc!r}")
        save()

    save()
    phase("tests", lambda: results.__setitem__("tests", run_tests(args.out)))
    phase("readout", lambda: results.__setitem__("readout_kernels", readout_kernels()))
    from xmem.model.golden import golden_rule_model

    model = golden_rule_model()
    frames_by_objects = {k: synthetic(args.frames, k) for k in (2, 5)}
    fp32_masks: dict[int, np.ndarray] = {}
    phase("official", lambda: fp32_masks.update(official_speed(model, frames_by_objects, results)))
    phase("default", default_model_speed, *frames_by_objects[2], results)
    phase("cup", cup_clip, results)
    phase("segment", whole_command, *frames_by_objects[2], args.work, results)
    if args.reference_dir is not None and 2 in fp32_masks:
        phase("reference", reference, args.reference_dir, args.frames, args.work, fp32_masks[2], results)
    phase("long", long_video, model, *frames_by_objects[2], args.long_frames, args.out, results)
    if (args.out / "long_video.csv").exists():
        phase("plot", plot_long_video, args.out / "long_video.csv", args.out / "long_video.png")
    if fp32_masks:
        phase("compile", compiled, model, frames_by_objects, fp32_masks, args.budget_s, results)
    results["seconds"] = round(time.monotonic() - T0, 1)
    save()
    print("\nconfiguration: frames/s (from frame 50), peak allocated MiB, agreement")
    for key, res in results.items():
        if isinstance(res, dict) and "fps" in res:
            agree = res.get("agreement_with_fp32", res.get("agreement_with_our_fp32", ""))
            print(f"{key:55s} {res['fps']:8.2f} ({res.get('fps_from_frame_50')}) "
                  f"{res.get('peak_allocated_mib', '')} {agree}")  # fmt: skip
    if "tests" in results:
        print("tests:", results["tests"])


if __name__ == "__main__":
    main()
