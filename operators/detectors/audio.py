"""Audio detectors on the cells' 16 kHz mono audio: loudness / onset / silence, and speech (Silero VAD)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from operators.detectors.base import SAMPLE_RATE_HZ, check_audio, empty, result
from operators.registry import register

FLOOR_DBFS = -120.0


@dataclass(frozen=True)
class LoudnessConfig:
    """Levels in dBFS (0 = full-scale square wave... sine peaks at -3), measured over ``frame_ms`` frames.

    silence: the cell's level (RMS of its real samples) < ``silence_dbfs``.
    loud:    the cell's level >= ``loud_dbfs``.
    onset:   a frame >= ``onset_rise_db`` above the running noise floor -- the quietest frame of the
             ``floor_window_ms`` before it, never taken below ``floor_min_dbfs`` (so codec noise in digital
             silence, e.g. AAC pre-echo 10 ms before a click, is no onset) -- and at least
             ``onset_min_dbfs`` (a sound starting, a click, a bang, across cell boundaries). Relative, so a
             ring 25 dB over a quiet bed is an onset whatever the absolute level. After an onset the
             detector re-arms only once the level falls back below floor + ``rearm_db``, so one sound is
             one onset. The floor needs ``min_history_ms`` of real audio before it: a stream (or a
             segment after a gap) that starts loud has nothing to compare with.
    A cell is judged when at least ``min_real_fraction`` of it is real audio and it has one real frame:
    the last, partial cell of a file is judged on the samples it has.
    """

    silence_dbfs: float = -50.0
    loud_dbfs: float = -12.0
    onset_rise_db: float = 15.0
    onset_min_dbfs: float = -80.0
    floor_window_ms: float = 2000.0
    floor_min_dbfs: float = -70.0
    rearm_db: float = 8.0
    min_history_ms: float = 50.0
    frame_ms: float = 10.0
    min_real_fraction: float = 0.0


def dbfs(x: np.ndarray, axis=None) -> np.ndarray:
    """RMS level in dB relative to full scale, floored at -120 dBFS."""
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=axis))
    return np.maximum(20 * np.log10(np.maximum(rms, 1e-12)), FLOOR_DBFS)


class LoudnessDetector(nn.Module):
    """Labels ``silence, loud, onset``.

    scores: silence and loud = fraction of the cell's frames below ``silence_dbfs`` / at or above
    ``loud_dbfs``; onset = the biggest rise over the floor in dB / 60, capped at 1. times: onset = start
    of the first onset frame in the cell; NaN otherwise. extras: ``level_dbfs`` (T,) and
    ``floor_dbfs`` (T,) (the noise floor at the cell's end), NaN for cells not judged.
    State: the frame levels of the last ``floor_window_ms`` and whether the onset detector is armed.
    """

    labels = ("silence", "loud", "onset")

    def __init__(self, cfg: LoudnessConfig):
        super().__init__()
        self.cfg = cfg
        self.method = (f"dbfs(silence<{cfg.silence_dbfs:g},loud>={cfg.loud_dbfs:g},"
                       f"onset+{cfg.onset_rise_db:g}dB>floor{cfg.floor_window_ms / 1000:g}s)")

    def forward(self, frames, frame_mask, audio, audio_mask, state=None):
        audio, mask = check_audio(audio, audio_mask)
        c = self.cfg
        T, S = audio.shape
        hop = int(round(c.frame_ms * SAMPLE_RATE_HZ / 1000))
        n = S // hop
        window = max(1, int(round(c.floor_window_ms / c.frame_ms)))
        need = max(1, int(round(c.min_history_ms / c.frame_ms)))
        scores, fired, times = empty(T, 3)
        level = np.full(T, np.nan, np.float32)
        floor_at_end = np.full(T, np.nan, np.float32)
        # frame levels of the whole call, NaN where a frame is mostly missing; the state's history in front
        fr = audio[:, :n * hop].reshape(T, n, hop)
        fm = mask[:, :n * hop].reshape(T, n, hop)
        fdb = np.where(fm.mean(-1) >= 0.5, dbfs(np.where(fm, fr, 0), axis=-1), np.nan).ravel()
        st = state if isinstance(state, dict) else {"levels": np.full(0, np.nan), "armed": True}
        prev = np.asarray(st["levels"], np.float64)[-window:]
        seq = np.concatenate([prev, fdb])
        # floor[j]: quietest real frame in the window before frame j (NaN without enough history)
        padded = np.concatenate([np.full(window, np.nan), seq])
        views = np.lib.stride_tricks.sliding_window_view(padded, window)[:len(seq)]
        counts = np.sum(~np.isnan(views), axis=1)
        with np.errstate(all="ignore"):
            floor = np.where(counts >= need, np.nanmin(np.where(np.isnan(views), np.inf, views), axis=1), np.nan)
        floor = np.maximum(floor, c.floor_min_dbfs)
        armed = bool(st.get("armed", True))
        for t in range(T):
            real = mask[t]
            cell = fdb[t * n:(t + 1) * n]
            judged = ~np.isnan(cell)
            if real.mean() < c.min_real_fraction or not judged.any():
                # no judgement; a frame level stays NaN there, so the floor and arming skip it too
                continue
            level[t] = dbfs(audio[t][real])
            scores[t, 0] = (cell[judged] < c.silence_dbfs).mean()
            scores[t, 1] = (cell[judged] >= c.loud_dbfs).mean()
            fired[t, 0] = level[t] < c.silence_dbfs
            fired[t, 1] = level[t] >= c.loud_dbfs
            for i in np.flatnonzero(judged):
                j = len(prev) + t * n + i
                f = floor[j]
                if np.isnan(f):
                    continue
                rise = seq[j] - f
                if not armed:
                    armed = rise < c.rearm_db
                    continue
                scores[t, 2] = max(scores[t, 2], min(1.0, max(0.0, rise) / 60.0))
                if rise >= c.onset_rise_db and seq[j] >= c.onset_min_dbfs:
                    armed = False
                    if not fired[t, 2]:
                        fired[t, 2] = True
                        times[t, 2] = i * hop / SAMPLE_RATE_HZ
            floor_at_end[t] = floor[len(prev) + (t + 1) * n - 1]
        new_state = {"levels": seq[-window:].copy(), "armed": armed}
        return (result(self.labels, scores, fired, times, self.method, "audio", level_dbfs=level,
                       floor_dbfs=floor_at_end), new_state)


@dataclass(frozen=True)
class SpeechConfig:
    """Silero VAD (the model packaged in the silero-vad wheel; no download) on 32 ms chunks.

    A chunk is speech when its probability >= ``threshold``; a cell fires when its speech chunks add
    up to >= ``min_speech_s`` seconds.
    """

    threshold: float = 0.5
    min_speech_s: float = 0.2


class SpeechDetector(nn.Module):
    """Label ``speech``; score = fraction of the cell's real chunks that are speech; times = start of
    the first speech chunk in the cell. extras: ``max_probability`` (T,).

    The VAD's recurrent state and the samples not yet filling a 512-sample chunk are carried in the
    returned state, so one detector can serve several streams, each with its own state. The state
    holds numpy arrays only: whoever carries it between calls (another process) needs no torch.
    """

    labels = ("speech",)
    CHUNK = 512                    # samples per VAD step at 16 kHz (32 ms)

    def __init__(self, cfg: SpeechConfig):
        super().__init__()
        from silero_vad import load_silero_vad  # the packaged TorchScript model, found via importlib.resources

        self.cfg = cfg
        self.vad = load_silero_vad(onnx=False)._model
        self.context = int(self.vad.context_size_samples)
        self.method = f"silero-vad(threshold={cfg.threshold:g})"
        self.lstm = _sequence_lstm(self.vad)
        if self.lstm is not None and not self._batched_matches_stepwise():
            self.lstm = None

    def initial_state(self):
        return {"rnn": np.zeros((2, 1, 128), np.float32), "context": np.zeros((1, self.context), np.float32),
                "pending": np.zeros(0, np.float32), "pending_real": np.zeros(0, bool)}

    @torch.inference_mode()
    def chunk_probabilities(self, audio: np.ndarray, mask: np.ndarray, state=None):
        """Speech probability of every complete 512-sample chunk of the call.

        ``audio``/``mask`` (T, S). Returns ``(probs (n,), real (n*512,) bool, offset, new_state)``:
        chunk k covers samples ``[k*512 - offset, (k+1)*512 - offset)`` of the call (``offset`` =
        samples carried over from the previous call, which come first).
        """
        st = state if state is not None else self.initial_state()
        # one continuous signal: what the last call left over, then this call's cells
        sig = np.concatenate([st["pending"], np.where(mask, audio, 0).ravel()])
        real = np.concatenate([st["pending_real"], mask.ravel()])
        offset = len(st["pending"])
        n_chunks = len(sig) // self.CHUNK
        run = self._probabilities if self.lstm is not None else self._probabilities_stepwise
        probs, rnn, ctx = run(torch.from_numpy(sig[:n_chunks * self.CHUNK]), torch.tensor(st["rnn"]),
                              torch.tensor(st["context"]))
        rest = n_chunks * self.CHUNK
        new_state = {"rnn": rnn.numpy().copy(), "context": ctx.numpy().copy(), "pending": sig[rest:].copy(),
                     "pending_real": real[rest:].copy()}
        return probs, real[:rest], offset, new_state

    def forward(self, frames, frame_mask, audio, audio_mask, state=None):
        audio, mask = check_audio(audio, audio_mask)
        T, S = audio.shape
        probs, real, offset, new_state = self.chunk_probabilities(audio, mask, state)
        n_chunks = len(probs)
        scores, fired, times = empty(T, 1)
        maxp = np.zeros(T, np.float32)
        speech_s = np.zeros(T)
        n_real = np.zeros(T)
        chunk_s = self.CHUNK / SAMPLE_RATE_HZ
        for k in range(n_chunks):
            end = (k + 1) * self.CHUNK - offset - 1           # a chunk belongs to the cell of its last sample
            if end < 0:
                continue
            t = end // S
            if real[k * self.CHUNK:(k + 1) * self.CHUNK].mean() < 0.5:
                continue
            n_real[t] += 1
            maxp[t] = max(maxp[t], probs[k])
            if probs[k] >= self.cfg.threshold:
                if speech_s[t] == 0:
                    times[t, 0] = max(0, k * self.CHUNK - offset - t * S) / SAMPLE_RATE_HZ
                speech_s[t] += chunk_s
        scores[:, 0] = np.divide(speech_s / chunk_s, n_real, out=np.zeros(T), where=n_real > 0)
        fired[:, 0] = speech_s >= self.cfg.min_speech_s - 1e-9
        times[~fired] = np.nan
        return result(self.labels, scores, fired, times, self.method, "audio", max_probability=maxp), new_state


    def _probabilities_stepwise(self, sig: torch.Tensor, rnn: torch.Tensor, ctx: torch.Tensor):
        """Speech probability per 512-sample chunk of ``sig`` (n*512,), one model call per chunk."""
        probs = np.zeros(len(sig) // self.CHUNK, np.float32)
        for k in range(len(probs)):
            x = sig[k * self.CHUNK:(k + 1) * self.CHUNK].unsqueeze(0)
            out, rnn = self.vad(torch.cat([ctx, x], dim=1), rnn)
            ctx = x[:, -self.context:]
            probs[k] = float(out)
        return probs, rnn, ctx

    def _probabilities(self, sig: torch.Tensor, rnn: torch.Tensor, ctx: torch.Tensor):
        """Same as :meth:`_probabilities_stepwise`, ~10x faster: only the LSTM carries state from chunk
        to chunk (each chunk's context is the previous chunk's tail, known in advance), so the STFT and
        the conv encoder see all chunks as one batch and the LSTM runs as one sequence."""
        n = len(sig) // self.CHUNK
        if n == 0:
            return np.zeros(0, np.float32), rnn, ctx
        full = torch.cat([ctx[0], sig])
        x = full.unfold(0, self.CHUNK + self.context, self.CHUNK)            # (n, context + 512)
        feats = self.vad.encoder(self.vad.stft(x)).squeeze(-1)              # (n, 128)
        h, (hn, cn) = self.lstm(feats.unsqueeze(1), (rnn[0:1], rnn[1:2]))     # (n, 1, 128)
        out = self.vad.decoder.decoder(h.squeeze(1).unsqueeze(-1))           # (n, 1, 1)
        probs = out.squeeze(1).mean(1).numpy().astype(np.float32)
        return probs, torch.cat([hn, cn]), sig[-self.context:].unsqueeze(0)

    @torch.inference_mode()
    def _batched_matches_stepwise(self) -> bool:
        """Check the batched path against the model's own step on noise (another silero-vad release
        may be built differently: then the step-by-step path is used)."""
        try:
            sig = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, 8 * self.CHUNK).astype(np.float32))
            rnn, ctx = torch.zeros(2, 1, 128), torch.zeros(1, self.context)
            a, ra, _ = self._probabilities(sig, rnn, ctx)
            b, rb, _ = self._probabilities_stepwise(sig, rnn, ctx)
            return bool(np.allclose(a, b, atol=1e-4) and torch.allclose(ra, rb, atol=1e-4))
        except Exception:  # noqa: BLE001  (any mismatch in structure means: do not use it)
            return False


def _sequence_lstm(vad) -> nn.LSTM | None:
    """The VAD decoder's LSTMCell as an ``nn.LSTM`` (same weights), or None when it has none."""
    cell = getattr(getattr(vad, "decoder", None), "rnn", None)
    try:
        w_ih, w_hh = cell.weight_ih, cell.weight_hh
        lstm = nn.LSTM(w_ih.shape[1], w_hh.shape[1])
        with torch.no_grad():
            for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(lstm, f"{k}_l0").copy_(getattr(cell, k))
    except (AttributeError, RuntimeError):
        return None
    return lstm.eval()


def _vad_status(cfg) -> tuple[bool, str | None]:
    try:
        import importlib.resources

        path = importlib.resources.files("silero_vad.data").joinpath("silero_vad.jit")
        return path.is_file(), str(path)
    except ModuleNotFoundError:
        return False, None


register("loudness", family="detector", config_cls=LoudnessConfig, builder=LoudnessDetector,
         description="loudness per cell in dBFS: silence, loud, and onsets over the running noise floor")
register("speech", family="detector", config_cls=SpeechConfig, builder=SpeechDetector, weights_status=_vad_status,
         description="speech by Silero VAD (the model inside the silero-vad wheel)")
