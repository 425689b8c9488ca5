"""Encoder throughput inside avgrid's wrappers vs the same model called directly in a loop.

    python -m benchmarks.encoders                 # every encoder, CPU (and CUDA when present)
    python -m benchmarks.encoders --models resnet18,panns_cnn6 --iters 5

Weights are RANDOM (``allow_random=True``, model ids end in ``@random``): throughput does not depend
on the values, and this machine cannot download checkpoints. Both sides share one state dict.
"direct" is the plain torchvision recipe: the weights enum's transforms, then the model, under
``torch.inference_mode`` (for PANNs: torchaudio Resample + MelSpectrogram + AmplitudeToDB, then the
network). On CUDA the direct model runs in the wrapper's dtype, so the ratio measures the wrapper's
overhead only.
Ratios ``<operator>_vs_direct`` (CPU) and ``<operator>_cuda_vs_direct``; target >= 0.8.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torchaudio
from torchvision.models import get_model_weights

from benchmarks._harness import report
from operators.encoders.frame import FRAME_ARCHS
from operators.encoders.video import VIDEO_ARCHS
from operators.registry import build

AUDIO = ("panns_cnn14", "panns_cnn10", "panns_cnn6")
TARGET = 0.8


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict, iters: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each call of each fn, in alternation (order flipped every round) so that both see
    the same machine load; a shared box's load spikes then hit both sides of a round alike."""
    for fn in fns.values():                      # warm-up: allocator, cudnn autotune, lazy init
        fn()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(iters):
        for name in (list(fns) if i % 2 == 0 else list(fns)[::-1]):
            t = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - t)
    return times


def frame_pair(arch: str, device: str, batch: int):
    enc = build(arch, weights=None, allow_random=True, device=device)
    # the direct model: the wrapper's network before its head was dropped has the same backbone
    model = copy.deepcopy(enc.model)
    preprocess = get_model_weights(arch).DEFAULT.transforms()
    x = torch.randint(0, 256, (batch, 224, 224, 3), dtype=torch.uint8)

    @torch.inference_mode()
    def direct():
        return model(preprocess(x.permute(0, 3, 1, 2).to(enc.device)).to(enc.dtype))

    return (lambda: enc(x)), direct, batch, enc.device


def video_pair(arch: str, device: str, batch: int):
    clf = build(arch, weights=None, allow_random=True, device=device)
    model = copy.deepcopy(clf.model)
    preprocess = get_model_weights(arch).DEFAULT.transforms()
    x = torch.randint(0, 256, (batch, clf.num_frames, 224, 224, 3), dtype=torch.uint8)

    @torch.inference_mode()
    def direct():
        return model(preprocess(x.permute(0, 1, 4, 2, 3).to(clf.device)).to(clf.dtype)).softmax(-1)

    return (lambda: clf(x)), direct, batch, clf.device


def audio_pair(name: str, device: str, batch: int):
    aenc = build(name, weights=None, allow_random=True, device=device)
    net, mel, to_db = copy.deepcopy(aenc.net), copy.deepcopy(aenc.melspec), copy.deepcopy(aenc.to_db)
    resample = torchaudio.transforms.Resample(16000, 32000).to(aenc.device)
    x = torch.randn(batch, 16000) * 0.1                       # 1 s cells at the grid's 16 kHz

    @torch.inference_mode()
    def direct():
        a = resample(x.to(aenc.device))
        return net(to_db(mel(a)).transpose(1, 2).unsqueeze(1))

    return (lambda: aenc(x)), direct, batch, aenc.device


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated operator names (default: all encoders)")
    ap.add_argument("--iters", type=int, default=5, help="timed rounds per encoder (medians are reported)")
    ap.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    # on a shared 2-core box, 2 threads under load ran 4x slower than 1 (barrier spinning); raise it
    # on a dedicated machine
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [m for m in args.models.split(",") if m] or [*FRAME_ARCHS, *VIDEO_ARCHS, *AUDIO]
    figures, ratios = {}, {}
    notes = {"weights": "random (allow_random=True): throughput only", "iters": args.iters, "threads": args.threads}
    for device in args.devices.split(","):
        cuda = device.startswith("cuda")
        for name in names:
            if name in FRAME_ARCHS:
                pair, unit, batch = frame_pair, "frames", 32 if cuda else 8
            elif name in VIDEO_ARCHS:
                pair, unit, batch = video_pair, "clips", 4 if cuda else 1
            else:
                pair, unit, batch = audio_pair, "cells", 64 if cuda else 8
            wrapped, direct, n, dev = pair(name, device, batch)
            times = interleaved({"avgrid": wrapped, "direct": direct}, args.iters, dev)
            tag = f"{name}_cuda" if cuda else name
            ours, theirs = statistics.median(times["avgrid"]), statistics.median(times["direct"])
            # the median of per-round ratios: each round's two calls ran under the same load
            ratio = statistics.median(d / a for a, d in zip(times["avgrid"], times["direct"]))
            figures[f"{tag}_avgrid_{unit}_per_s"] = n / ours
            figures[f"{tag}_direct_{unit}_per_s"] = n / theirs
            ratios[f"{tag}_vs_direct"] = ratio
            print(f"{tag}: avgrid {n / ours:.1f} {unit}/s, direct {n / theirs:.1f} {unit}/s, ratio {ratio:.2f}",
                  flush=True)
    return report("encoders", figures=figures, ratios=ratios, targets={k: TARGET for k in ratios}, notes=notes)


if __name__ == "__main__":
    main()
