"""What is said and how: speech spans (Silero VAD) -> a recogniser -> transcript + speech sentiment.

    det = build("transcripts")                 # pocketsphinx's bundled en-us model; no download
    res, state = det(frames, frame_mask, audio, audio_mask, state)
    res.spans                                  # [SpeechSpan(cell, t0_s, t1_s, text, confidence, sentiment), ...]

A span opens at the first speech chunk (32 ms) and closes after ``end_silence_s`` without speech,
when the real audio stops (the last, partial cell of a file, or a cell without audio), or at
``max_span_s`` -- so the speech
audio this operator keeps in its state between calls is bounded (``max_span_s`` of int16 at 16 kHz,
about 1 MB at 30 s). Only a closed span is transcribed: the recogniser never runs on audio the VAD
calls non-speech (silence, music, noise). Times are seconds from the start of the call's first cell
(negative when a span began in an earlier call); ``cell`` is the cell in which the span closed.

Each span also gets a sentiment (:class:`SpeechSentiment`): valence from the transcript with VADER's
lexicon, arousal from the voice (level and pitch variation, torchaudio's pitch detection). Both are
heuristics: see the README for how far to trust them.

``standard`` swaps in torchaudio's wav2vec2 ASR (``WAV2VEC2_ASR_BASE_960H``, greedy CTC) when its
weights are in ``$TORCH_HOME/hub/checkpoints`` (or ``AVGRID_ASR_WEIGHTS`` names the file);
a missing file is an error naming it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from operators.detectors.audio import SpeechConfig, SpeechDetector, dbfs
from operators.detectors.base import SAMPLE_RATE_HZ, DetectorResult, check_audio, empty
from operators.detectors.sound_events import missing_package
from operators.registry import register

FILLERS = ("<s>", "</s>", "<sil>")


@dataclass(frozen=True)
class SpeechSentimentConfig:
    """Speech sentiment. valence: VADER's compound score of the transcript (-1..1); label positive at
    >= ``positive_at``, negative at <= ``negative_at`` (VADER's own cut-offs), else neutral. arousal
    (0..1): the mean of a level term (``level_mid_dbfs`` -> 0.5, ``level_span_db`` per logistic unit)
    and a pitch-variation term (standard deviation of the voiced pitch in semitones / ``pitch_sd_full_st``)."""

    positive_at: float = 0.05
    negative_at: float = -0.05
    level_mid_dbfs: float = -26.0
    level_span_db: float = 6.0
    pitch_sd_full_st: float = 6.0


@dataclass(frozen=True)
class SentimentValues:
    label: str
    negative: float
    neutral: float
    positive: float
    valence: float
    arousal: float

    def values(self) -> tuple[tuple[str, float], ...]:
        return (("negative", self.negative), ("neutral", self.neutral), ("positive", self.positive),
                ("valence", self.valence), ("arousal", self.arousal))


class SpeechSentiment:
    """``(text, audio (S,) float32 16 kHz) -> SentimentValues``; ``method`` names how."""

    def __init__(self, cfg: SpeechSentimentConfig):
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ModuleNotFoundError:
            raise missing_package("vaderSentiment", "its lexicon gives the valence of what is said") from None
        self.cfg = cfg
        self.vader = SentimentIntensityAnalyzer()
        self.method = "vader-lexicon(valence)+voice(level,pitch-sd)(arousal)"

    def __call__(self, text: str, audio: np.ndarray) -> SentimentValues:
        c = self.cfg
        pol = self.vader.polarity_scores(text or "")
        valence = float(pol["compound"])
        label = "positive" if valence >= c.positive_at else "negative" if valence <= c.negative_at else "neutral"
        return SentimentValues(label, float(pol["neg"]), float(pol["neu"]), float(pol["pos"]), valence,
                               self.arousal(audio))

    def arousal(self, audio: np.ndarray) -> float:
        c = self.cfg
        if len(audio) < SAMPLE_RATE_HZ // 10:
            return 0.5
        level = float(dbfs(audio))
        lev_term = 1.0 / (1.0 + math.exp(-(level - c.level_mid_dbfs) / c.level_span_db))
        import torchaudio

        f0 = torchaudio.functional.detect_pitch_frequency(torch.from_numpy(audio), SAMPLE_RATE_HZ,
                                                          freq_low=70, freq_high=400).numpy()
        # frames quieter than the speech's own level - 20 dB are not voiced: their "pitch" is noise
        hop = len(audio) // max(1, len(f0))
        frame_db = dbfs(audio[:hop * len(f0)].reshape(len(f0), hop), axis=1) if hop else np.zeros(0)
        voiced = f0[(frame_db > level - 20) & (f0 > 70) & (f0 < 400)]
        sd = float(np.std(12 * np.log2(voiced / np.median(voiced)))) if len(voiced) >= 5 else 0.0
        pitch_term = min(1.0, sd / c.pitch_sd_full_st)
        return float(np.clip(0.5 * lev_term + 0.5 * pitch_term, 0.0, 1.0))




@dataclass(frozen=True)
class SpeechSpan:
    """One transcribed speech stretch. Times: seconds from the start of the call's first cell."""

    cell: int
    t0_s: float
    t1_s: float
    text: str
    confidence: float | None
    sentiment: SentimentValues | None


@dataclass(frozen=True)
class TranscriptResult(DetectorResult):
    """A :class:`DetectorResult` with the label ``transcript`` (fired in the cell where a span closed,
    score = the recogniser's confidence) plus the spans themselves and the sentiment method."""

    spans: tuple[SpeechSpan, ...] = ()
    sentiment_method: str | None = None


@dataclass(frozen=True)
class TranscriptsConfig:
    """Speech spans and their transcripts.

    recognizer: ``pocketsphinx`` (offline, bundled en-us model) or ``wav2vec2`` (torchaudio's
      WAV2VEC2_ASR_BASE_960H; weights from ``$TORCH_HOME/hub/checkpoints`` or ``AVGRID_ASR_WEIGHTS``).
    vad_threshold: a 32 ms chunk is speech at >= this Silero VAD probability.
    end_silence_s: a span ends after this much non-speech. min_speech_s: shorter spans are dropped.
    max_span_s: a span is cut (and transcribed) at this length; bounds the audio kept in the state.
    pad_s: audio kept before and after a span for the recogniser.
    min_confidence: transcripts below this confidence are dropped (None keeps all).
    sentiment: also give each span a speech sentiment.
    pocketsphinx_max_hmm_per_frame / pocketsphinx_second_pass: pocketsphinx's ``maxhmmpf`` and
      ``fwdflat``; 3000 and no second pass decode 2-3x faster than its defaults (10000, on) for about
      one content word in 27 fewer on our test sentences.
    """

    recognizer: str = "pocketsphinx"
    vad_threshold: float = 0.5
    end_silence_s: float = 0.5
    min_speech_s: float = 0.3
    max_span_s: float = 30.0
    pad_s: float = 0.2
    min_confidence: float | None = None
    sentiment: bool = True
    device: str = "cpu"
    pocketsphinx_max_hmm_per_frame: int = 3000
    pocketsphinx_second_pass: bool = False


_WARM_UP = (np.random.default_rng(0).standard_normal(SAMPLE_RATE_HZ) * 300).astype(np.int16)


class _Pocketsphinx:
    def __init__(self, max_hmm_per_frame: int = 3000, second_pass: bool = False):
        try:
            from pocketsphinx import Decoder, get_model_path
        except ModuleNotFoundError:
            raise missing_package("pocketsphinx", "its bundled en-us model transcribes speech") from None
        self.decoder = Decoder(samprate=SAMPLE_RATE_HZ, loglevel="FATAL", bestpath=True, fwdflat=second_pass,
                               maxhmmpf=max_hmm_per_frame)
        from importlib.metadata import PackageNotFoundError, version

        try:
            ver = version("pocketsphinx")
        except PackageNotFoundError:
            ver = "unknown"
        self.model_id = (f"pocketsphinx-{ver}/en-us"
                         f"(maxhmmpf={max_hmm_per_frame}{',fwdflat' if second_pass else ''})")
        self.model_path = get_model_path()
        # the first utterance a decoder sees scores a little differently from every later one (measured:
        # 0.385670 against 0.385668 for the same speech, pocketsphinx 5.1.1 with fwdflat off): one second
        # of fixed noise first, so a span's confidence is the same whatever the decoder heard before
        # (a re-run after a crash, another stream on the same operator)
        self(_WARM_UP)

    def __call__(self, pcm16: np.ndarray) -> tuple[str, float | None]:
        d = self.decoder
        # the feature front end adapts across utterances (cepstral mean, noise estimate): reset it, so a
        # span's transcript does not depend on what the decoder heard before (another stream, an earlier span)
        d.reinit_feat()
        d.start_utt()
        d.process_raw(pcm16.tobytes(), full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        if hyp is None or not hyp.hypstr.strip():
            return "", None
        d.get_lattice()                       # word posteriors come from the lattice
        probs = [float(s.prob) for s in d.seg() if s.word not in FILLERS and not s.word.startswith("[")]
        conf = float(np.mean(np.clip(probs, 0, 1))) if probs else None
        return hyp.hypstr.strip(), conf


ASR_ENV = "AVGRID_ASR_WEIGHTS"


def wav2vec2_weights() -> Path:
    env = os.environ.get(ASR_ENV)
    if env:
        return Path(env).expanduser()
    from torchaudio.pipelines import WAV2VEC2_ASR_BASE_960H

    return Path(torch.hub.get_dir()) / "checkpoints" / WAV2VEC2_ASR_BASE_960H._path


class _Wav2vec2:
    def __init__(self, device: str):
        from torchaudio.pipelines import WAV2VEC2_ASR_BASE_960H as bundle

        from operators.weights import WeightsError, file_tag, load_state_dict

        path = wav2vec2_weights()
        if not path.is_file():
            raise WeightsError(f"{path}: wav2vec2 ASR weights not found (the standard profile's transcripts need "
                               f"them). Download https://download.pytorch.org/torchaudio/models/{bundle._path} "
                               f"into {path.parent}, or set {ASR_ENV}=<file>")
        import torchaudio

        model = torchaudio.models.wav2vec2_model(**bundle._params)
        state = load_state_dict(path)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise WeightsError(f"{path}: does not match wav2vec2 base ASR ({str(e).splitlines()[0]})") from None
        self.model = model.to(device).eval()
        self.device = device
        self.labels = bundle.get_labels()
        self.model_id = f"wav2vec2-base-960h:{file_tag(path)}"

    @torch.inference_mode()
    def __call__(self, pcm16: np.ndarray) -> tuple[str, float | None]:
        x = torch.from_numpy(pcm16.astype(np.float32) / 32768).to(self.device)[None]
        emissions, _ = self.model(x)
        probs = emissions[0].softmax(-1)
        best = probs.argmax(-1).tolist()
        out, prev, confs = [], None, []
        for i, k in enumerate(best):
            if k != prev and k != 0:
                out.append(self.labels[k])
                confs.append(float(probs[i, k]))
            prev = k
        text = "".join(out).replace("|", " ").strip().lower()
        return " ".join(text.split()), (float(np.mean(confs)) if confs else None)


class Transcriber(nn.Module):
    """Detector-style operator: ``forward(frames, frame_mask, audio, audio_mask, state)`` ->
    ``(TranscriptResult, state)``. State: the VAD's state, the open span (start sample, last speech
    sample, int16 audio since its start minus ``pad_s``), samples seen.

    ``flushes_at_end``: at the end of a stream the analyzer shows it one cell without audio, which
    closes a span still open (speech going on until the media's last sample)."""

    flushes_at_end = True

    def __init__(self, cfg: TranscriptsConfig):
        super().__init__()
        self.cfg = cfg
        self.vad = SpeechDetector(SpeechConfig(threshold=cfg.vad_threshold))
        if cfg.recognizer == "pocketsphinx":
            self.asr = _Pocketsphinx(cfg.pocketsphinx_max_hmm_per_frame, cfg.pocketsphinx_second_pass)
        elif cfg.recognizer == "wav2vec2":
            self.asr = _Wav2vec2(cfg.device)
        else:
            raise ValueError(f"transcripts: recognizer must be pocketsphinx or wav2vec2, got {cfg.recognizer!r}")
        self.model_id = self.asr.model_id
        self.method = f"{self.asr.model_id}+{self.vad.method}"
        self.sentiment = SpeechSentiment(SpeechSentimentConfig()) if cfg.sentiment else None

    def initial_state(self) -> dict:
        return {"vad": None, "pos": 0, "open": None}

    def forward(self, frames, frame_mask, audio, audio_mask, state=None):
        audio, mask = check_audio(audio, audio_mask)
        T, S = audio.shape
        c = self.cfg
        st = dict(state) if state is not None else self.initial_state()
        probs, real, offset, st["vad"] = self.vad.chunk_probabilities(audio, mask, st["vad"])
        pos0 = int(st["pos"])                     # stream sample of the call's first sample
        ch = SpeechDetector.CHUNK
        pad = int(c.pad_s * SAMPLE_RATE_HZ)
        end_gap = int(c.end_silence_s * SAMPLE_RATE_HZ)
        max_len = int(c.max_span_s * SAMPLE_RATE_HZ)
        flat = np.where(mask, audio, 0).ravel()
        pcm_call = (np.clip(flat, -1, 1) * 32767).astype(np.int16)
        # history before this call the next span may need as its leading pad
        prev_tail = st.get("tail", np.zeros(0, np.int16))
        spans: list[SpeechSpan] = []
        op = st["open"]
        # where real audio stops inside a cell (end of the file's audio), or a cell has none at all (a
        # file whose video outlasts its audio, a gap): close what is open there
        stops = [(t * S + int(np.flatnonzero(mask[t])[-1]) + 1 if mask[t].any() else t * S, t) for t in range(T)
                 if not mask[t, -1]]

        def audio_between(a: int, b: int) -> np.ndarray:
            """int16 samples of stream positions [a, b) from the open span's buffer and this call."""
            parts = []
            if op is not None and op["buf_start"] < pos0:
                buf = op["buf"]
                lo, hi = max(a, op["buf_start"]), min(b, pos0)
                if hi > lo:
                    parts.append(buf[lo - op["buf_start"]:hi - op["buf_start"]])
            lo, hi = max(a, pos0), min(b, pos0 + T * S)
            if hi > lo:
                parts.append(pcm_call[lo - pos0:hi - pos0])
            return np.concatenate(parts) if parts else np.zeros(0, np.int16)

        def close(end_sample: int, cell: int) -> None:
            nonlocal op
            s0, s1 = op["start"], op["last"]
            if s1 - s0 >= c.min_speech_s * SAMPLE_RATE_HZ:
                a, b = max(op["buf_start"], s0 - pad), min(end_sample, s1 + pad)
                spans.append(self._span(audio_between(a, b), s0, s1, pos0, cell))
            op = None

        for k in range(len(probs)):
            a = pos0 + k * ch - offset            # stream sample of the chunk's start
            b = a + ch
            cell = min(T - 1, max(0, (b - 1 - pos0) // S))
            for stop in [s for s in stops if pos0 + s[0] <= a]:
                if op is not None:
                    close(pos0 + stop[0], stop[1])
                stops.remove(stop)
            if real[k * ch:(k + 1) * ch].mean() < 0.5:
                continue
            speech = probs[k] >= c.vad_threshold
            if op is not None and speech and b - op["start"] > max_len:
                close(op["last"], cell)            # at the longest span: this chunk starts the next one
            if op is None:
                if speech:
                    op = {"start": a, "last": b, "buf_start": max(0, a - pad), "buf": np.zeros(0, np.int16)}
                    if op["buf_start"] < pos0:     # the leading pad lies in the previous call
                        n = min(pos0 - op["buf_start"], len(prev_tail))
                        op["buf"] = prev_tail[len(prev_tail) - n:].copy()
                        op["buf_start"] = pos0 - n
                continue
            if speech:
                op["last"] = b
            if a - op["last"] >= end_gap:
                close(a, cell)
        for stop, t in stops:
            if op is not None:
                close(pos0 + stop, t)
        if op is not None:
            # keep the open span's audio for the next call (bounded by max_span_s + pad)
            full = audio_between(op["buf_start"], pos0 + T * S)
            op = {**op, "buf": full[-(max_len + 2 * pad + end_gap):]}
            op["buf_start"] = pos0 + T * S - len(op["buf"])
        st["open"] = op
        st["pos"] = pos0 + T * S
        st["tail"] = pcm_call[-pad:].copy() if pad else np.zeros(0, np.int16)
        scores, fired, times = empty(T, 1)
        for sp in spans:
            if sp.text:
                fired[sp.cell, 0] = True
                scores[sp.cell, 0] = max(scores[sp.cell, 0], sp.confidence or 0.0)
        res = TranscriptResult(("transcript",), torch.from_numpy(scores), torch.from_numpy(fired), self.method,
                               "audio", torch.from_numpy(times), {}, spans=tuple(spans),
                               sentiment_method=self.sentiment.method if self.sentiment else None)
        return res, st

    def _span(self, pcm: np.ndarray, s0: int, s1: int, pos0: int, cell: int) -> "SpeechSpan":
        text, conf = self.asr(pcm)
        if self.cfg.min_confidence is not None and (conf is None or conf < self.cfg.min_confidence):
            text = ""
        senti = None
        if self.sentiment is not None and text:
            senti = self.sentiment(text, pcm.astype(np.float32) / 32768)
        return SpeechSpan(cell, (s0 - pos0) / SAMPLE_RATE_HZ, (s1 - pos0) / SAMPLE_RATE_HZ, text, conf, senti)


def _package_status(package: str, inner: str) -> tuple[bool, str]:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return False, f"{package} package ({inner}, not installed)"
    return True, str(Path(list(spec.submodule_search_locations)[0]).parent / inner)


def _transcripts_status(cfg: TranscriptsConfig) -> tuple[bool, str | None]:
    if cfg.recognizer == "wav2vec2":
        p = wav2vec2_weights()
        return p.is_file(), str(p)
    ok, where = _package_status("pocketsphinx", "pocketsphinx/model/en-us")
    ok2, lexicon = _package_status("vaderSentiment", "vaderSentiment/vader_lexicon.txt")
    return ok and ok2, f"{where}; {lexicon}"


register("transcripts", family="detector", config_cls=TranscriptsConfig, builder=Transcriber,
         weights_status=_transcripts_status,
         description="speech transcripts of VAD speech spans by pocketsphinx's bundled en-us model, and their "
                     "sentiment (VADER lexicon + voice level/pitch)")


@dataclass(frozen=True)
class Wav2vec2TranscriptsConfig(TranscriptsConfig):
    """:class:`TranscriptsConfig` with torchaudio's wav2vec2 ASR (the ``standard`` profile's recogniser)."""

    recognizer: str = "wav2vec2"


register("transcripts_wav2vec2", family="detector", config_cls=Wav2vec2TranscriptsConfig, builder=Transcriber,
         weights_status=_transcripts_status,
         description="speech transcripts of VAD speech spans by torchaudio's wav2vec2 base ASR, and their "
                     "sentiment (standard profile)")
