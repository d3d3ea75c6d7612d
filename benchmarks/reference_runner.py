"""Drive the reference XMem code (hkchengrex/XMem, a local checkout) on the benchmark video, for comparison.

Used by benchmarks/speed.py (its current interface: ``step`` takes 3×H×W images). The reference code is
not part of this project: point --reference-dir at a
checkout of it (its ResNet constructors set to ``pretrained=False`` so that nothing is downloaded).
Weights: the golden rule (same key names as the released checkpoint), from a ``--weights`` file (loaded
as the reference's eval.py loads XMem.pth) or built in memory. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import SyntheticVideo  # noqa: E402
from xmem.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from xmem.jobs.monitor import peak_rss_mib  # noqa: E402
from xmem.model.golden import golden_rule_state_dict  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reference-dir", type=Path, required=True)
    parser.add_argument("--save-masks", type=Path, required=True)
    parser.add_argument(
        "--weights",
        type=Path,
        help="a .pth file, loaded as the reference's eval.py does (default: built in memory)",
    )
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument(
        "--prerender",
        action="store_true",
        help="render and normalise every frame before timing (the work of the reference's data loader "
        "workers; for GPUs, where rendering on the CPU would dominate the time)",
    )
    parser.add_argument("--warmup", type=int, default=0, help="frames run (then forgotten) before timing")
    parser.add_argument(
        "--amp", action="store_true", help="autocast to fp16 as the reference's eval.py --amp"
    )
    args = parser.parse_args()

    sys.path.insert(0, str(args.reference_dir))
    from inference.inference_core import InferenceCore  # the reference engine
    from model.network import XMem

    device = torch.device(args.device)
    use_cuda = device.type == "cuda"
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    if args.weights is not None:  # eval.py: the constructor reads the file, then it is loaded once more
        net = XMem({}, str(args.weights), map_location="cpu").eval()
        net.load_weights(torch.load(args.weights, map_location="cpu"), init_as_zero_if_needed=True)
    else:
        net = XMem({"key_dim": 64, "value_dim": 512, "hidden_dim": 64}, model_path=None)
        net.load_weights(golden_rule_state_dict(), init_as_zero_if_needed=True)
    net.eval()
    net.to(device)
    config = {
        "mem_every": 5, "deep_update_every": -1, "enable_long_term": True, "enable_long_term_count_usage": True,
        "top_k": 30, "min_mid_term_frames": 5, "max_mid_term_frames": 10, "num_prototypes": 128,
        "max_long_term_elements": 10000, "key_dim": 64, "value_dim": 512, "hidden_dim": 64,
    }  # fmt: skip
    labels = list(range(1, args.objects + 1))
    video = SyntheticVideo(args.frames, args.height, args.width, args.objects, seed=args.seed)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    mask0 = video.mask(0)
    first = torch.from_numpy(np.stack([mask0 == i for i in labels]).astype(np.float32)).to(device)

    def prepare(frame: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(frame).permute(2, 0, 1).float() / 255 - mean) / std

    frames = [prepare(f) for f in video.frames()] if args.prerender else None

    def run(count: int, masks: np.ndarray | None) -> list[float]:
        core = InferenceCore(net, config=config)
        core.set_all_labels(labels)
        source = frames if frames is not None else (prepare(f) for f in video.frames())
        times = []
        if use_cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for t, image in enumerate(source):
            if t == count:
                break
            image = image.to(device)
            with torch.autocast("cuda", dtype=torch.float16, enabled=args.amp):
                if t == 0:
                    prob = core.step(image, first, labels, end=count == 1)
                else:
                    prob = core.step(image, end=t == count - 1)
            mask = torch.argmax(prob, dim=0).cpu().numpy()
            if masks is not None:
                masks[t] = mask
            if use_cuda:
                torch.cuda.synchronize(device)
            now = time.perf_counter()
            times.append(now - start)
            start = now
        return times

    if args.warmup:
        run(min(args.warmup, args.frames), None)
    masks = np.zeros((args.frames, args.height, args.width), np.uint8)
    times = run(args.frames, masks)
    np.save(args.save_masks, masks)
    fps = (len(times) - 1) / sum(times[1:])
    result = {"fps": fps, "peak_rss_mb": peak_rss_mib(), "frame_seconds": times}
    if use_cuda:
        result["peak_gpu_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(json.dumps(result))


if __name__ == "__main__":
    main()
