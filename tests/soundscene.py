"""Real sounds mixed at known times and levels over a noise bed, muxed under real street footage.

The sound tests and ``benchmarks/quality_sound.py`` build the same two clips from this table, so the
benchmark measures the set the tests check:

- ``street``: five real sounds from Debian packages (a phone ring, a camera shutter, a bell, a canary,
  a trumpet) at -30 dBFS over a -55 dBFS pink-noise bed, and the shutter again in the file's last 0.35 s.
- ``talk``: two espeak-ng sentences with known text (one clearly positive, one clearly negative),
  stretches of bed only (silence for the recogniser), and 8 s of music that fluidsynth plays from a MIDI
  file written here, on the TimGM6mb General MIDI soundfont.

Levels are RMS over the sound's active part (samples above 1/1000 of its peak), in dBFS.
"""

from __future__ import annotations

import dataclasses
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import av
import numpy as np

from tests.realmedia import real_file

RATE = 48_000                # the clips' audio rate (avgrid resamples to 16 kHz itself)
BED_DBFS = -55.0
SOUND_DBFS = -30.0
SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")


@dataclasses.dataclass(frozen=True)
class Placed:
    """A sound in a clip: ``onset_s`` media seconds, ``labels`` the AudioSet names that are right for it."""

    key: str                 # tests.realmedia key, or "speech:<text>" / "music"
    onset_s: float
    labels: frozenset[str]
    level_dbfs: float = SOUND_DBFS
    max_s: float | None = None

    @property
    def text(self) -> str | None:
        return self.key[len("speech:"):] if self.key.startswith("speech:") else None


# The oxygen "phone ring" is a plucked ringtone melody, so musical names are right for it too.
PHONE = frozenset({"Telephone", "Telephone bell ringing", "Ringtone", "Music", "Musical instrument",
                   "Plucked string instrument", "Ukulele", "Zither", "Marimba, xylophone", "Mallet percussion"})
SHUTTER = frozenset({"Camera", "Single-lens reflex camera", "Mechanisms", "Clicking"})
# Yaru's "bell" is a short electronic two-tone ding
BELL = frozenset({"Bell", "Ding", "Ding-dong", "Doorbell", "Chime", "Jingle bell", "Tubular bells", "Glockenspiel",
                  "Beep, bleep", "Ping", "Alarm", "Telephone"})
CANARY = frozenset({"Bird", "Bird vocalization, bird call, bird song", "Chirp, tweet", "Animal", "Wild animals"})
TRUMPET = frozenset({"Trumpet", "Brass instrument", "Music", "Musical instrument", "French horn", "Trombone"})

STREET_S = 23.6              # 23 full cells and a partial one of 0.6 s
STREET = (
    Placed("phone_ring", 2.3, PHONE),
    Placed("camera_shutter", 8.4, SHUTTER),
    Placed("bell", 11.6, BELL),
    Placed("canary", 14.2, CANARY),
    Placed("trumpet", 17.5, TRUMPET),
    Placed("camera_shutter", 23.25, SHUTTER),        # in the last 0.4 s of the file
)

POSITIVE = "What a wonderful day, I love this beautiful park and the friendly people."
NEGATIVE = "This is terrible, I hate the awful noise and the broken windows."
TALK_S = 26.0
TALK = (
    Placed(f"speech:{POSITIVE}", 2.0, frozenset(), level_dbfs=-20.0),
    Placed(f"speech:{NEGATIVE}", 9.0, frozenset(), level_dbfs=-20.0),
    # a General MIDI acoustic piano: any piano or keyboard name is right
    Placed("music", 15.0, frozenset({"Music", "Musical instrument", "Piano", "Electric piano", "Keyboard (musical)"}),
           level_dbfs=-25.0, max_s=8.0),
)
# Held out: real sounds the sound-event settings were not tuned on (the benchmark reports them apart)
HELDOUT_S = 16.0
HELDOUT = (
    Placed("glass_water", 1.4, frozenset({"Glass", "Chink, clink", "Water", "Liquid", "Pour", "Drip",
                                          "Splash, splatter", "Trickle, dribble", "Fill (with liquid)", "Gurgling"})),
    Placed("xylophone", 4.3, frozenset({"Marimba, xylophone", "Mallet percussion", "Glockenspiel", "Vibraphone",
                                        "Percussion", "Music", "Musical instrument"})),
    Placed("guitar", 8.2, frozenset({"Guitar", "Acoustic guitar", "Electric guitar", "Plucked string instrument",
                                     "Strum", "Music", "Musical instrument"})),
    Placed("piano", 10.6, frozenset({"Piano", "Electric piano", "Keyboard (musical)", "Music", "Musical instrument"})),
    Placed("harpsichord", 13.5, frozenset({"Harpsichord", "Keyboard (musical)", "Plucked string instrument", "Music",
                                           "Musical instrument", "Zither"})),
)

SILENT_SPANS = ((0.0, 1.8), (6.6, 8.8), (13.2, 14.8), (23.5, 26.0))     # bed only, in ``talk``


def load_audio(path: Path, rate: int = RATE) -> np.ndarray:
    """Mono float32 at ``rate`` of any file FFmpeg reads."""
    with av.open(str(path)) as c:
        rs = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = [r.to_ndarray().ravel() for f in c.decode(audio=0) for r in rs.resample(f)]
        chunks += [r.to_ndarray().ravel() for r in rs.resample(None)]
    return np.concatenate(chunks).astype(np.float32)


def active_dbfs(x: np.ndarray) -> float:
    act = x[np.abs(x) > 1e-3 * np.abs(x).max()]
    return float(20 * np.log10(np.sqrt(np.mean(np.square(act, dtype=np.float64))) + 1e-12))


def at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    return (x * 10 ** ((dbfs - active_dbfs(x)) / 20)).astype(np.float32)


def pink_noise(n: int, dbfs: float, seed: int = 0) -> np.ndarray:
    spec = np.fft.rfft(np.random.default_rng(seed).normal(size=n))
    k = np.arange(len(spec), dtype=np.float64)
    k[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(k), n)
    return (x / np.sqrt(np.mean(x ** 2)) * 10 ** (dbfs / 20)).astype(np.float32)


def espeak(text: str, workdir: Path) -> np.ndarray:
    wav = workdir / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True, capture_output=True)
    return load_audio(wav)


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


def write_midi(path: Path, seconds: float = 8.0) -> None:
    """A piano piece: a C-major arpeggio melody over held chords, 120 bpm (one beat = 0.5 s)."""
    tpq = 480
    events: list[tuple[int, bytes]] = [(0, bytes([0xC0, 0]))]          # program 0: acoustic grand piano
    chords = ((48, 52, 55), (53, 57, 60), (55, 59, 62), (48, 52, 55))
    melody = (60, 64, 67, 72, 71, 67, 64, 62)
    beats = int(seconds / 0.5)
    for b in range(beats):
        t = b * tpq
        note = melody[b % len(melody)]
        events += [(t, bytes([0x90, note, 96])), (t + tpq - 40, bytes([0x80, note, 0]))]
        if b % 4 == 0:
            for n in chords[(b // 4) % len(chords)]:
                events += [(t, bytes([0x90, n, 70])), (t + 4 * tpq - 40, bytes([0x80, n, 0]))]
    events.sort(key=lambda e: e[0])
    track, last = b"", 0
    for t, data in events:
        track += _vlq(t - last) + data
        last = t
    track += _vlq(0) + b"\xff\x2f\x00"
    path.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, tpq) + b"MTrk" + struct.pack(">I", len(track)) + track)


def fluidsynth_music(workdir: Path, seconds: float = 8.0) -> np.ndarray:
    mid, wav = workdir / "music.mid", workdir / "music.wav"
    write_midi(mid, seconds)
    subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.8", "-r", str(RATE), "-F", str(wav), str(SOUNDFONT), str(mid)],
                   check=True, capture_output=True)
    return load_audio(wav)


def render(placed: tuple[Placed, ...], seconds: float, workdir: Path, seed: int = 0,
           spans: list | None = None) -> np.ndarray:
    """The mixed mono track at :data:`RATE`: the bed plus every sound at its onset and level.
    ``spans`` (if given) receives ``(placed, t_start_s, t_end_s)`` of every sound as mixed."""
    mix = pink_noise(int(round(seconds * RATE)), BED_DBFS, seed)
    for p in placed:
        if p.text is not None:
            x = espeak(p.text, workdir)
        elif p.key == "music":
            x = fluidsynth_music(workdir, p.max_s or 8.0)
        else:
            x = load_audio(real_file(p.key))
        if p.max_s is not None:
            x = x[:int(p.max_s * RATE)]
        x = at_level(x, p.level_dbfs)
        a = int(round(p.onset_s * RATE))
        n = min(len(x), len(mix) - a)
        mix[a:a + n] += x[:n]
        if spans is not None:
            act = np.flatnonzero(np.abs(x[:n]) > 1e-3 * np.abs(x).max())
            spans.append((p, (a + act[0]) / RATE, (a + act[-1] + 1) / RATE))
    return mix


def write_clip(path: Path, audio: np.ndarray, seconds: float, video_offset_s: float = 0.0,
               size: tuple[int, int] = (384, 288)) -> Path:
    """An MP4 of the street footage (opencv-doc's vtest.avi, 10 fps) from ``video_offset_s`` with
    ``audio`` (mono float32 at :data:`RATE`) as AAC; both streams ``seconds`` long."""
    n_frames = int(round(seconds * 10))
    with av.open(str(real_file("vtest"))) as src, av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "28"}
        as_ = out.add_stream("aac", rate=RATE, layout="mono")
        skip = int(round(video_offset_s * 10))
        k = 0
        for i, frame in enumerate(src.decode(video=0)):
            if i < skip:
                continue
            if k >= n_frames:
                break
            f = frame.reformat(width=size[0], height=size[1], format="yuv420p")
            f.pts = k
            for pkt in vs.encode(f):
                out.mux(pkt)
            k += 1
        for pkt in vs.encode(None):
            out.mux(pkt)
        block = 1024
        for i in range(0, len(audio), block):
            chunk = audio[i:i + block]
            af = av.AudioFrame.from_ndarray(chunk[None, :].astype(np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts = RATE, i
            for pkt in as_.encode(af):
                out.mux(pkt)
        for pkt in as_.encode(None):
            out.mux(pkt)
    return path


def build_clips(dest: Path) -> dict:
    """Both clips under ``dest``: ``{"street": path, "talk": path, "spans": {"street": [...], "talk": [...]}}``,
    spans as ``(Placed, t_start_s, t_end_s)`` of each sound's audible part."""
    dest.mkdir(parents=True, exist_ok=True)
    spans: dict[str, list] = {"street": [], "talk": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        street = write_clip(dest / "street.mp4", render(STREET, STREET_S, work, 1, spans["street"]), STREET_S)
        talk = write_clip(dest / "talk.mp4", render(TALK, TALK_S, work, 2, spans["talk"]), TALK_S)
    return {"street": street, "talk": talk, "spans": spans}


def build_heldout(dest: Path) -> dict:
    """The held-out clip: ``{"heldout": path, "spans": {"heldout": [...]}}``."""
    dest.mkdir(parents=True, exist_ok=True)
    spans: dict[str, list] = {"heldout": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_clip(dest / "heldout.mp4", render(HELDOUT, HELDOUT_S, Path(tmp), 3, spans["heldout"]), HELDOUT_S,
                          video_offset_s=40.0)
    return {"heldout": path, "spans": spans}


def tools_missing() -> str | None:
    for tool in ("espeak-ng", "fluidsynth"):
        if shutil.which(tool) is None:
            return f"{tool} missing (make sysdeps)"
    if not SOUNDFONT.is_file():
        return f"{SOUNDFONT} missing (make sysdeps: timgm6mb-soundfont)"
    return None
