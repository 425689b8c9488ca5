"""Descriptions: captions, audio-visual events and fused sentiment from everything known about a moment.

The operators report per cell what they saw and heard (people and what they do, faces, named sounds,
speech and what was said, camera moves). :class:`Describer` runs after them on the same cells and
turns those observations into what a person would write:

- a caption per *run* of cells that look and sound alike ("Six people walk; a telephone rings."),
  started anew when what is seen, heard or said changes (not every cell), cut at the longest record
  length so live streams keep producing; ``method="describe"``, the operators it drew on in ``model``;
- audio-visual events where both modalities agree in the same cell: ``speaking`` (a face or a person in
  view while speech is heard), ``impact`` (a burst of motion and a sound onset together), ``cut_on_sound``
  (a shot change with a sound onset), each naming the two observations it joins in ``detail``;
- a fused sentiment per run (``modality="audiovisual"``) from speech sentiment, affective sounds and face
  expressions, weighted by their confidence, ``neutral`` when the evidence is weak.

Everything is deterministic (same observations, same text) and the state between calls is small
(the open run's counts and labels, transcripts waiting for their caption)::

    d = Describer(max_cells=10)
    extra, state = d(cells, observations, state)       # extra[i]: Observations to add to cell i
    tail = d.finish(state)                             # end of stream: the runs still open
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from pipeline.runtime.builder import Observation

METHOD = "describe"
MODEL = "describe/1"
MAX_CHARS = 160
HOLD_CELLS = 3            # a run with speech waits this many cells for its transcript
PEOPLE_ACTIONS = ("walking", "running", "standing")
VERBS = {"walking": ("walks", "walk"), "running": ("runs", "run"), "standing": ("stands", "stand")}
NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
CAMERA = {"pan": "the camera pans", "tilt": "the camera tilts", "zoom": "the camera zooms"}
# AudioSet display names -> what a person would write; others are described by their own name
SOUND_PHRASES = {
    "Music": "music", "Musical instrument": "music", "Piano": "a piano plays", "Guitar": "a guitar plays",
    "Singing": "someone sings", "Telephone": "a telephone rings", "Telephone bell ringing": "a telephone rings",
    "Ringtone": "a phone rings", "Alarm clock": "an alarm clock rings", "Alarm": "an alarm sounds",
    "Bell": "a bell rings", "Church bell": "a church bell rings", "Bicycle bell": "a bicycle bell rings",
    "Doorbell": "a doorbell rings", "Ding": "a ding", "Chime": "a chime", "Wind chime": "wind chimes",
    "Dog": "a dog barks", "Animal": "an animal calls", "Wild animals": "an animal calls", "Rustle": "rustling",
    "Chirp, tweet": "a bird chirps", "Bird vocalization, bird call, bird song": "a bird sings", "Bark": "a dog barks", "Cat": "a cat meows", "Meow": "a cat meows", "Bird": "birds sing",
    "Applause": "applause", "Clapping": "clapping", "Cheering": "cheering", "Laughter": "laughter",
    "Crying, sobbing": "someone cries", "Screaming": "a scream", "Baby cry, infant cry": "a baby cries",
    "Car": "a car passes", "Vehicle": "traffic", "Traffic noise, roadway noise": "traffic", "Siren": "a siren",
    "Engine": "an engine runs", "Footsteps": "footsteps", "Door": "a door", "Knock": "a knock",
    "Camera": "a camera clicks", "Single-lens reflex camera": "a camera shutter", "Clock": "a clock ticks",
    "Tick-tock": "a clock ticks", "Glass": "glass clinks", "Water": "water", "Rain": "rain", "Wind": "wind",
    "Thunder": "thunder", "Explosion": "an explosion", "Gunshot, gunfire": "a gunshot", "Whistle": "a whistle",
    "Buzzer": "a buzzer", "Beep, bleep": "a beep",
}


@dataclass
class _Run:
    """Consecutive cells that look and sound alike, aggregated."""

    signature: tuple
    t_start: float
    t_end: float
    cells: int = 0
    people: int = 0
    actions: dict = field(default_factory=dict)          # action -> most people doing it in one cell
    faces: int = 0
    sounds: dict = field(default_factory=dict)           # label -> best score
    sound_kinds: dict = field(default_factory=dict)      # label -> its AudioSet category
    speech: bool = False
    camera: str | None = None
    motion: bool = False
    transcripts: list = field(default_factory=list)      # (t0, t1, text)
    sentiments: list = field(default_factory=list)       # (modality, valence, arousal, confidence)
    operators: set = field(default_factory=set)
    wait: int = 0                                         # cells waited for a transcript since the run closed


@dataclass
class _Cell:
    """What one cell shows, digested from its observations."""

    people: int = 0
    actions: dict = field(default_factory=dict)
    faces: int = 0
    sounds: dict = field(default_factory=dict)
    sound_kinds: dict = field(default_factory=dict)      # label -> its AudioSet category (the event's detail)
    speech: bool = False
    onset: bool = False
    cut: bool = False
    motion: bool = False
    motion_score: float = 0.0
    camera: str | None = None
    transcripts: list = field(default_factory=list)
    sentiments: list = field(default_factory=list)
    span_sentiments: list = field(default_factory=list)   # (t0, t1, sentiment item)
    operators: set = field(default_factory=set)

    def signature(self) -> tuple:
        """What must stay the same for a run to go on: whether people (or, without people, faces) are
        in view, the kinds of sound heard (AudioSet categories: a ukulele and music are both music),
        speech, the camera's move. Counts and what each person does are told, not split on: they
        change from second to second on a busy street."""
        return (self.people > 0, self.faces > 0 and not self.people, tuple(sorted(set(self.sound_kinds.values()))),
                self.speech, self.camera)


def digest(observations: list[Observation]) -> _Cell:
    """One cell's observations -> the facts a description uses."""
    c = _Cell()
    tracks: dict[str, set] = {}
    for o in observations:
        op = o.operator or o.model.split(":", 1)[0]
        if o.kind == "event":
            if o.label == "person":
                c.people = max(c.people, int(o.count or 1))
            elif o.label == "face":
                c.faces = max(c.faces, int(o.count or 1))
            elif o.label == "speech":
                c.speech = True
            elif o.label == "onset":
                c.onset = True
                continue                  # joins AV events (which name their own sources), not captions
            elif o.label == "cut":
                c.cut = True
                continue
            elif o.label == "motion":
                c.motion, c.motion_score = True, max(c.motion_score, float(o.score or 0.0))
            elif o.modality == "audio" and op.startswith("sound_events"):
                c.sounds[o.label] = max(c.sounds.get(o.label, 0.0), float(o.score or 0.0))
                c.sound_kinds[o.label] = o.detail or o.label
            else:
                continue
            c.operators.add(op)
        elif o.kind == "action":
            if o.subject == "camera" and o.label in CAMERA:
                c.camera = o.label
                c.operators.add(op)
            elif o.subject == "person" and o.label in PEOPLE_ACTIONS:
                if o.track_id is not None:
                    tracks.setdefault(o.label, set()).add(o.track_id)
                else:
                    c.actions[o.label] = max(c.actions.get(o.label, 0), int(o.count or 1))
                c.operators.add(op)
        elif o.kind == "caption" and o.method == "asr" and o.span is not None and o.label.strip():
            c.transcripts.append((float(o.span[0]), float(o.span[1]), o.label.strip()))
            c.operators.add(op)
        elif o.kind == "sentiment" and o.modality in ("speech", "audio", "visual"):
            v = dict(o.values)
            item = (o.modality, float(v.get("valence", 0.0)), float(v.get("arousal", 0.0)),
                    float(o.score if o.score is not None else 0.5))
            if o.span is not None:           # e.g. a speech span's sentiment, known when the speech ended
                c.span_sentiments.append((float(o.span[0]), float(o.span[1]), item))
            else:
                c.sentiments.append(item)
            c.operators.add(op)
    for label, ids in tracks.items():
        c.actions[label] = max(c.actions.get(label, 0), len(ids))
    if c.actions and not c.people:
        c.people = max(c.actions.values())
    return c


def _number(n: int) -> str:
    return NUMBERS[n] if n < len(NUMBERS) else str(n)


def _people_phrase(n: int, actions: dict) -> str:
    """``n`` people (the most in one cell) and what they do (per action, the most doing it in one cell):
    "Six people walk", "Five people, three of them walk", "Nine people: five walk, four stand"."""
    who = "A person" if n == 1 else f"{_number(n).capitalize()} people"
    acts = sorted(actions, key=lambda a: (-actions[a], PEOPLE_ACTIONS.index(a)))
    if not acts:
        return f"{who} in view"
    if n == 1:
        return f"{who} {VERBS[acts[0]][0]}"
    if len(acts) == 1:
        doing = min(n, actions[acts[0]])
        if doing >= n - 1:
            return f"{who} {VERBS[acts[0]][1]}"
        return f"{who}, {_number(doing)} of them {VERBS[acts[0]][0 if doing == 1 else 1]}"
    return f"{who}: " + ", ".join(f"{_number(min(n, actions[a]))} {VERBS[a][0 if actions[a] == 1 else 1]}"
                                  for a in acts[:2])


def caption_of(run: _Run) -> str:
    """The sentence for a run: who/what is seen and what they do, what is heard, what is said."""
    seen, heard = [], []
    if run.people:
        seen.append(_people_phrase(run.people, run.actions))
    if run.faces:
        faces = "a face" if run.faces == 1 else f"{_number(run.faces)} faces"
        seen.append(faces.capitalize() if not seen else f"{faces} in view")
    if run.camera:
        seen.append(CAMERA[run.camera] if seen else CAMERA[run.camera].capitalize())
    if not seen and run.motion:
        seen.append("Something moves")
    kinds_told = set()
    for label in sorted(run.sounds, key=lambda s: (-run.sounds[s], s)):
        kind = run.sound_kinds.get(label, label)
        if kind in kinds_told or len(kinds_told) == 2:
            continue       # the best-named sound of each kind, two kinds at most ("music", not "music; ukulele")
        kinds_told.add(kind)
        heard.append(SOUND_PHRASES.get(label, label.split(",")[0].lower()))
    said = " ".join(t for _, _, t in sorted(run.transcripts))
    parts = seen + heard
    if said:
        parts.append("someone says: ")
    elif run.speech:
        parts.append("someone speaks")
    if not parts:
        return "Nothing notable seen or heard."
    text = "; ".join(parts)
    text = text[0].upper() + text[1:]
    if said:
        room = MAX_CHARS - len(text) - 3               # quotes and the full stop
        quote = said if len(said) <= room else said[:max(0, room - 3)].rstrip() + "..."
        return f"{text}'{quote}'."
    return (text if len(text) < MAX_CHARS else text[:MAX_CHARS - 4].rstrip() + "...") + "."


def fused_sentiment(run: _Run) -> tuple[str, dict] | None:
    """Confidence-weighted valence and arousal over the run's speech, sound and face sentiment;
    ``neutral`` when the evidence (summed confidence x |valence|) is weak. None without any evidence."""
    if not run.sentiments:
        return None
    w = np.array([c for _, _, _, c in run.sentiments], np.float64)
    val = np.array([v for _, v, _, _ in run.sentiments], np.float64)
    aro = np.array([a for _, _, a, _ in run.sentiments], np.float64)
    total = float(w.sum())
    if total <= 0:
        return None
    valence, arousal = float((w * val).sum() / total), float((w * aro).sum() / total)
    strength = float(np.clip(abs(valence) * min(1.0, total), 0.0, 1.0))
    label = "neutral" if strength < 0.15 else ("positive" if valence > 0 else "negative")
    pos = strength if label == "positive" else 0.0
    neg = strength if label == "negative" else 0.0
    return label, {"negative": neg, "neutral": 1.0 - strength, "positive": pos,
                   "valence": float(np.clip(valence, -1, 1)), "arousal": float(np.clip(arousal, -1, 1))}


class Describer:
    """Captions, audio-visual events and fused sentiment from the observations of a stream's cells.

    ``max_cells``: the longest run (the record builder's max segment, in cells).
    """

    def __init__(self, max_cells: int | None = None):
        self.max_cells = max_cells

    def __call__(self, cells, observations: list[list[Observation]], state):
        """``cells``: the call's cells (``t_start``/``t_end`` media s, ``index``, ``segment``);
        ``observations[i]``: what the operators said of cell i. Returns (extra observations per
        cell, new state)."""
        state = _State() if state is None else dataclasses.replace(state, pending=list(state.pending),
                                                                     cand=list(state.cand))
        out: list[list[Observation]] = [[] for _ in cells]
        for i, (cell, obs) in enumerate(zip(cells, observations)):
            facts = digest(obs)
            out[i] += self._av_events(facts)
            self._place(state, _At(cell.index, cell.segment, cell.t_start, cell.t_end), facts)
            # transcripts (and their sentiment) arrive when the speech ends: they go to the runs they cover
            for t0, t1, text in facts.transcripts:
                for run in state.pending + ([state.run] if state.run is not None else []):
                    if _overlap(run, t0, t1) and (t0, t1, text) not in run.transcripts:
                        run.transcripts.append((t0, t1, text))
            for t0, t1, item in facts.span_sentiments:
                for run in state.pending + ([state.run] if state.run is not None else []):
                    if _overlap(run, t0, t1):
                        run.sentiments.append(item)
            ready = []
            for run in state.pending:
                run.wait += 1
                if not run.speech or run.transcripts or run.wait > HOLD_CELLS:
                    ready.append(run)
            state.pending = [r for r in state.pending if r not in ready]
            for run in ready:
                out[i] += self._records_of(run)
        return out, state

    def finish(self, state, late: list[Observation] = ()) -> list[Observation]:
        """End of stream: every run still open or waiting for its transcript. ``late``: span
        observations the operators gave up only now (a transcript of speech still going at the end)."""
        if state is None:
            return []
        state = dataclasses.replace(state, pending=list(state.pending), cand=list(state.cand))
        self._close(state)
        facts = digest(list(late))
        for t0, t1, text in facts.transcripts:
            for run in state.pending:
                if _overlap(run, t0, t1) and (t0, t1, text) not in run.transcripts:
                    run.transcripts.append((t0, t1, text))
        for t0, t1, item in facts.span_sentiments:
            for run in state.pending:
                if _overlap(run, t0, t1):
                    run.sentiments.append(item)
        return [o for run in state.pending for o in self._records_of(run)]

    # -- internals ----------------------------------------------------------------------------
    def _place(self, state: "_State", at: "_At", facts: _Cell) -> None:
        """Put a cell into the open run, a new run, or hold it as the candidate start of one: what is
        seen or heard must look different for two cells in a row before a new caption starts (a
        detector missing someone for one cell does not cut the description in two)."""
        sig = facts.signature()
        run = state.run
        if run is not None and (state.last != (at.segment, at.index - 1)
                                or (self.max_cells and run.cells + len(state.cand) >= self.max_cells)):
            self._close(state)
            run = None
        state.last, state.last_end = (at.segment, at.index), at.t_end
        if run is None:
            state.run = _Run(sig, at.t_start, at.t_end)
            _add(state.run, facts, at)
        elif sig == run.signature:
            for c_at, c_facts in state.cand:       # a one-cell change that did not last: part of this run
                _add(run, c_facts, c_at)
            state.cand = []
            _add(run, facts, at)
        elif state.cand:
            # a second cell in a row unlike the run: the run ended before the first; that cell starts
            # the next run, and this one is placed against it
            (c_at, c_facts), state.cand = state.cand[0], []
            self._close(state)
            state.run = _Run(c_facts.signature(), c_at.t_start, c_at.t_end)
            _add(state.run, c_facts, c_at)
            if sig == state.run.signature:
                _add(state.run, facts, at)
            else:
                state.cand = [(at, facts)]
        else:
            state.cand = [(at, facts)]

    @staticmethod
    def _close(state: "_State") -> None:
        """The open run is done (and a held candidate cell becomes a run of its own)."""
        if state.run is not None:
            state.pending.append(state.run)
        for c_at, c_facts in state.cand:
            run = _Run(c_facts.signature(), c_at.t_start, c_at.t_end)
            _add(run, c_facts, c_at)
            state.pending.append(run)
        state.run, state.cand = None, []
    def _records_of(self, run: _Run) -> list[Observation]:
        drew = sorted(run.operators) or ["nothing"]
        model = f"{MODEL} (from {', '.join(drew)})"
        out = [Observation("caption", caption_of(run), None, model, method=METHOD, operator="describe",
                           span=(run.t_start, run.t_end))]
        fused = fused_sentiment(run)
        if fused is not None:
            label, values = fused
            kinds = sorted({m for m, _, _, _ in run.sentiments})
            out.append(Observation("sentiment", label, max(values["negative"], values["neutral"], values["positive"]),
                                   f"{MODEL} fused-sentiment(weighted by confidence; from {', '.join(kinds)})",
                                   modality="audiovisual", values=tuple(values.items()), operator="describe",
                                   span=(run.t_start, run.t_end)))
        return out

    @staticmethod
    def _av_events(c: _Cell) -> list[Observation]:
        """Where both modalities agree in one cell."""
        out = []
        if c.speech and (c.faces or c.people):
            who = "face" if c.faces else "person"
            out.append(Observation("event", "speaking", 1.0, f"{MODEL} av({who}+speech)", modality="audiovisual",
                                   operator="describe", detail=f"{who}+speech",
                                   count=c.faces or c.people))
        if c.onset and c.motion and c.motion_score >= 0.05 and not c.cut:
            out.append(Observation("event", "impact", c.motion_score, f"{MODEL} av(motion+onset)",
                                   modality="audiovisual", operator="describe", detail="motion+onset"))
        if c.cut and (c.onset or c.sounds):
            out.append(Observation("event", "cut_on_sound", 1.0, f"{MODEL} av(cut+sound change)",
                                   modality="audiovisual", operator="describe",
                                   detail="cut+onset" if c.onset else "cut+sound"))
        return out


@dataclass
class _State:
    run: _Run | None = None
    pending: list = field(default_factory=list)     # closed runs not written yet (waiting for a transcript)
    cand: list = field(default_factory=list)        # [(_At, _Cell)]: a cell that may start the next run
    last: tuple | None = None                       # (segment, index) of the last cell seen
    last_end: float | None = None                   # its t_end, media s


@dataclass(frozen=True)
class _At:
    """Where a cell sits (what a run needs of it)."""

    index: int
    segment: int
    t_start: float
    t_end: float


def _add(run: _Run, c: _Cell, cell) -> None:
    run.t_end = cell.t_end
    run.cells += 1
    run.people = max(run.people, c.people)
    for a, n in c.actions.items():
        run.actions[a] = max(run.actions.get(a, 0), n)
    run.faces = max(run.faces, c.faces)
    for s, v in c.sounds.items():
        run.sounds[s] = max(run.sounds.get(s, 0.0), v)
    run.sound_kinds.update(c.sound_kinds)
    run.speech |= c.speech
    run.camera = run.camera or c.camera
    run.motion |= c.motion
    run.sentiments += c.sentiments
    run.operators |= c.operators


def _overlap(run: _Run, t0: float, t1: float) -> bool:
    inter = min(run.t_end, t1) - max(run.t_start, t0)
    return inter > 0 and inter >= 0.3 * min(t1 - t0, run.t_end - run.t_start)
