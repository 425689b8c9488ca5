"""Fusion benchmark: train + evaluate on the synthetic labelled set (CPU, a few minutes).

Generates encoded train and test clips (pipeline.knowntruth.dataset, different seeds), trains the fused
model and two ablations (audio only, video only) through ``pipeline.training.train`` (decode with
pipeline.sources, weight-free features, cache), and scores all three on the held-out clips.
A last run shifts the test audio two cells later: the audio-visual ``impact`` class must then
fall apart, since it holds only when the bang and the collision share a cell.

    python -m benchmarks.fusion [--train-clips 240] [--test-clips 80] [--epochs 60] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks._harness import report, timed
from pipeline.knowntruth.dataset import make_dataset
from pipeline.training import evaluate, format_metrics, train

AV_CLASS = "impact"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-clips", type=int, default=240)
    p.add_argument("--test-clips", type=int, default=80)
    p.add_argument("--clip-seconds", type=int, default=8)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="data seeds are 2*seed+1 (train) and 2*seed+2 (test)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="avgrid-fusion-") as tmp:
        tmp = Path(tmp)
        with timed() as t_data:
            make_dataset(tmp / "train", n_clips=args.train_clips, clip_seconds=args.clip_seconds, seed=2 * args.seed + 1)
            make_dataset(tmp / "test", n_clips=args.test_clips, clip_seconds=args.clip_seconds, seed=2 * args.seed + 2)
        runs, seconds = {}, {}
        for name, modalities in (("fused", ["video", "audio"]), ("audio_only", ["audio"]), ("video_only", ["video"])):
            with timed() as t:
                train(tmp / "train", tmp / name, epochs=args.epochs, seed=args.seed, progress=False, modalities=modalities,
                      batch_size=16)
            seconds[name] = t()
            runs[name] = evaluate(tmp / name, tmp / "test")
        runs["audio_shifted"] = evaluate(tmp / "fused", tmp / "test", audio_shift_cells=2)
    for name, m in runs.items():
        print(f"### {name}\n{format_metrics(m)}\n")

    def av_f1(run):
        return runs[run]["event"]["f1"].get(AV_CLASS, 0.0)

    fused = runs["fused"]
    figures = {
        "fused_action_f1": fused["action"]["macro_f1"],
        "fused_event_f1": fused["event"]["macro_f1"],
        "fused_event_map": fused["event"]["mAP"],
        "fused_sentiment_f1": fused["sentiment"]["macro_f1"],
        "av_event_f1_fused": av_f1("fused"),
        "av_event_f1_audio_only": av_f1("audio_only"),
        "av_event_f1_video_only": av_f1("video_only"),
        "av_event_f1_audio_shifted": av_f1("audio_shifted"),
        "dataset_seconds": t_data(),
        "train_fused_seconds": seconds["fused"],
    }
    ratios = {
        "fused_action_f1_over_0.9": figures["fused_action_f1"] / 0.9,
        "fused_event_f1_over_0.9": figures["fused_event_f1"] / 0.9,
        "av_f1_margin_vs_audio_only": figures["av_event_f1_fused"] - figures["av_event_f1_audio_only"],
        "av_f1_margin_vs_video_only": figures["av_event_f1_fused"] - figures["av_event_f1_video_only"],
        "av_f1_drop_when_audio_shifted_2_cells": figures["av_event_f1_fused"] - figures["av_event_f1_audio_shifted"],
    }
    targets = {"fused_action_f1": 0.9, "fused_event_f1": 0.9, "fused_action_f1_over_0.9": 1.0,
               "fused_event_f1_over_0.9": 1.0, "av_f1_margin_vs_audio_only": 0.3, "av_f1_margin_vs_video_only": 0.3,
               "av_f1_drop_when_audio_shifted_2_cells": 0.3}
    notes = {"args": vars(args), "model": fused["model"],
             "margins_and_drops": "differences of F1 (not ratios); the audio-shift drop has no number in the issue, "
                                  "0.3 is this benchmark's bar",
             "metrics": {k: {h: v[h] for h in ("action", "event", "sentiment") if h in v} for k, v in runs.items()}}
    return report("fusion", figures=figures, ratios=ratios, targets=targets, notes=notes)


if __name__ == "__main__":
    main()
