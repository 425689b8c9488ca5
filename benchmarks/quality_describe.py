"""Description quality on the real clips the tests build (tests/soundscene.py, tests/facescene.py).

    python -m benchmarks.quality --only describe

One offline-profile run of ``avgrid annotate`` over the street clip (real pedestrians and sounds), the
talk clip (a positive and a negative espeak sentence), a real face on screen while a sentence plays,
and the same face with the voice two cells later; then:

- ``caption_mentions_people_recall``: street-clip cells where the people operator saw someone
  (a ``person`` event covers the cell) whose description caption mentions people.
- ``caption_tells_action_recall``: the same cells, after the tracker's 2 s warm-up, whose caption
  also says what they do (walk / stand / run).
- ``av_speaking_f1``: per cell of both face clips, ``speaking`` events against the truth (cells where
  the face is on screen while the voice is heard).
- ``fused_sentiment_accuracy``: spoken sentences whose fused (audiovisual) sentiment at their onset
  has the intended label.
- ``captions_per_minute_street``: how often the description changes on a busy street (lower reads
  better, as long as the recalls hold).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from benchmarks._harness import annotate_rows, part, sound_clips

WARMUP_S = 2.0


@part("describe")
def measure() -> tuple[dict, dict]:
    from tests.facescene import make_face_clip
    from tests.soundscene import NEGATIVE, POSITIVE, STREET_S

    with sound_clips() as (tmp, clips):
        face = make_face_clip(tmp / "clips" / "face.mp4", face_s=(1.0, 3.0), speech_at_s=1.0)
        shifted = make_face_clip(tmp / "clips" / "face-shifted.mp4", face_s=(1.0, 3.0), speech_at_s=3.0)
        rows = annotate_rows((clips["street"], clips["talk"], face.path, shifted.path), tmp / "out",
                             ("event", "sentiment", "caption"), "-q")

    def of(kind, name, **m):
        return [r for r in rows[kind] if r["stream_id"].endswith("/" + name) and all(r[k] == v for k, v in m.items())]

    def covers(recs, t):
        return [r for r in recs if r["t_start"] <= t < r["t_end"]]

    people = of("event", "street.mp4", label="person")
    caps = of("caption", "street.mp4", method="describe")
    cells = [k + 0.5 for k in range(int(math.ceil(STREET_S))) if covers(people, k + 0.5)]
    mention = [t for t in cells if any(re.search(r"\b(people|person)\b", c["text"], re.I) for c in covers(caps, t))]
    late = [t for t in cells if t >= WARMUP_S]
    tells = [t for t in late if any(re.search(r"\b(walks?|stands?|runs?)\b", c["text"]) for c in covers(caps, t))]

    tp = fp = fn = 0
    for clip in (face, shifted):
        name = Path(clip.path).name
        speaking = of("event", name, label="speaking")
        for k in range(int(clip.duration_s)):
            a, b = k, k + 1.0
            truth = (max(a, clip.face_s[0]) < min(b, clip.face_s[1])
                     and max(a, clip.speech_s[0]) < min(b, clip.speech_s[1]))
            said = bool(covers(speaking, k + 0.5))
            tp, fp, fn = tp + (truth and said), fp + (said and not truth), fn + (truth and not said)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0

    fused = of("sentiment", "talk.mp4", modality="audiovisual")
    right = 0
    for onset, feeling in ((2.0, "positive"), (9.0, "negative")):
        here = [s for s in fused if s["t_start"] <= onset + 1.0 and s["t_end"] > onset]
        right += bool(here) and all(s["label"] == feeling for s in here)
    figures = {
        "caption_mentions_people_recall": len(mention) / len(cells) if cells else math.nan,
        "caption_tells_action_recall": len(tells) / len(late) if late else math.nan,
        "av_speaking_f1": f1,
        "fused_sentiment_accuracy": right / 2,
        "captions_per_minute_street": 60.0 * len(caps) / STREET_S,
    }
    notes = {"describe": f"street: {len(cells)} cells with people, {len(caps)} captions; speaking cells tp={tp} "
                         f"fp={fp} fn={fn}; sentences: {POSITIVE!r} (positive), {NEGATIVE!r} (negative)"}
    return figures, notes


if __name__ == "__main__":
    from benchmarks._harness import report

    f, n = measure()
    report("quality_describe", f, {}, notes=n)
