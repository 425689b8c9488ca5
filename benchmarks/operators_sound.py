"""CPU cost of the audio operators per 1 s cell, on the real-sound clips the tests build.

    python -m benchmarks.operators --only sound    # into benchmarks/results/operators.json
    python -m benchmarks.operators_sound           # alone, into benchmarks/results/operators_sound.json

The clips' audio is decoded (AAC) and cut into 16 kHz cells as the grid does, then each audio
operator of the offline profile runs on 4-cell calls with its state carried (as the runtime calls
it), one thread, CPU time by ``process_time``:

- ``<operator>_ms_per_cell`` and ``audio_ms_per_cell`` (all of them together) on the speech-free
  street clip (five real sounds over a noise bed);
- ``asr_cpu_s_per_speech_s``: CPU seconds the recogniser itself spends per second of speech it is
  given (the VAD spans of the talk clip, pads included), and ``transcripts_ms_per_cell_talk``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks._harness import part, sound_clips

SR = 16_000
AUDIO_OPERATORS = ("loudness", "speech", "sound_events", "transcripts")
CALL_CELLS = 4


def _cells(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from tests.soundscene import load_audio

    x = load_audio(path, SR)
    T = int(np.ceil(len(x) / SR))
    audio = np.zeros(T * SR, np.float32)
    mask = np.zeros(T * SR, bool)
    audio[:len(x)], mask[:len(x)] = x, True
    return audio.reshape(T, SR), mask.reshape(T, SR)


def _run(op, audio, mask, repeats: int = 3) -> float:
    """CPU ms per cell (best of ``repeats`` passes over the clip)."""
    T = audio.shape[0]
    frames, fmask = np.zeros((CALL_CELLS, 1, 8, 8, 3), np.uint8), np.zeros((CALL_CELLS, 1), bool)
    best = float("inf")
    for _ in range(repeats):
        state = None
        t = time.process_time()
        for k in range(0, T, CALL_CELLS):
            n = min(CALL_CELLS, T - k)
            _, state = op(frames[:n], fmask[:n], audio[k:k + n], mask[k:k + n], state)
        best = min(best, (time.process_time() - t) / T * 1000)
    return best


class _TimedAsr:
    def __init__(self, asr):
        self.asr, self.cpu_s, self.audio_s = asr, 0.0, 0.0
        self.model_id = asr.model_id

    def __call__(self, pcm):
        t = time.process_time()
        out = self.asr(pcm)
        self.cpu_s += time.process_time() - t
        self.audio_s += len(pcm) / SR
        return out


@part("sound")
def measure() -> tuple[dict, dict]:
    from operators.registry import build

    with sound_clips() as (_, clips):
        street, talk = _cells(clips["street"]), _cells(clips["talk"])
    figures = {}
    for name in AUDIO_OPERATORS:
        figures[f"{name}_ms_per_cell"] = _run(build(name), *street)
    figures["audio_ms_per_cell"] = sum(figures[f"{n}_ms_per_cell"] for n in AUDIO_OPERATORS)
    tr = build("transcripts")
    tr.asr = _TimedAsr(tr.asr)
    figures["transcripts_ms_per_cell_talk"] = _run(tr, *talk, repeats=1)
    figures["asr_cpu_s_per_speech_s"] = tr.asr.cpu_s / max(tr.asr.audio_s, 1e-9)
    import os

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    notes = {"sound": (f"one thread, {CALL_CELLS}-cell calls with state; load average during the run {load} "
                       f"(CPU time still grows on a busy 2-core box); street clip {street[0].shape[0]} cells "
                       f"(no speech), talk clip {talk[0].shape[0]} cells with {tr.asr.audio_s:.1f} s of speech "
                       f"given to pocketsphinx")}
    return figures, notes


if __name__ == "__main__":
    # alone: benchmarks/results/operators_sound.json (benchmarks.operators writes every part into operators.json)
    import torch

    from benchmarks._harness import report
    from benchmarks.operators import BUDGETS

    torch.set_num_threads(1)
    f, n = measure()
    report("operators_sound", f, {}, limits={k: v for k, v in BUDGETS.items() if k in f}, notes=n)
