"""Descriptions from observations: runs of alike cells, people and what they do, sounds, quotes, AV events."""

from dataclasses import dataclass

from pipeline.runtime.builder import CellSpan, Observation, RecordBuilder
from pipeline.runtime.describe import MAX_CHARS, Describer

JARGON = ("object_motion", "dbfs", "silero", "haar", "farneback", "hog", "yamnet", "_")


@dataclass
class C:
    index: int
    t_start: float
    t_end: float
    segment: int = 0


def cells(n, start=0):
    return [C(k, float(k), k + 1.0) for k in range(start, start + n)]


def people(n, action="walking"):
    out = [Observation("event", "person", 0.8, "people:hog", modality="visual", operator="people", count=n)]
    out += [Observation("action", action, 0.7, "people:track", operator="people", subject="person", track_id=i)
            for i in range(n)]
    return out


def sound(label, score=0.9):
    return Observation("event", label, score, "sound_events:yamnet", modality="audio", operator="sound_events",
                       detail="Sounds of things")


SPEECH = Observation("event", "speech", 0.9, "speech:silero-vad", modality="audio", operator="speech")
FACE = Observation("event", "face", 0.9, "faces:opencv-haar", modality="visual", operator="faces", count=2)


def run(per_cell, n_start=0, max_cells=10):
    d = Describer(max_cells=max_cells)
    cs = cells(len(per_cell), n_start)
    extra, state = d(cs, per_cell, None)
    b = RecordBuilder("s", max_cells=max_cells)
    drafts = []
    for c, obs, more in zip(cs, per_cell, extra):
        drafts += b.add(CellSpan(c.index, c.t_start, c.t_end), obs + more)
    drafts += b.add_spans(CellSpan(cs[-1].index, cs[-1].t_start, cs[-1].t_end), d.finish(state)) + b.finish()
    return drafts


def captions(drafts):
    return sorted(((d.t_start, d.t_end, d.fields["text"]) for d in drafts
                   if d.kind == "caption" and d.fields["method"] == "describe"))


def test_people_and_what_they_do_a_new_caption_only_when_the_description_changes():
    per_cell = [people(6) + [sound("Telephone bell ringing")]] * 3 + [people(5)] * 2 + [people(2, "standing")] * 2
    caps = captions(run(per_cell))
    # what people do is told, not split on (it changes every second on a busy street); the sound is
    assert caps == [(0.0, 3.0, "Six people walk; a telephone rings."), (3.0, 7.0, "Five people: five walk, two stand.")]
    caps = captions(run([people(6)] * 2 + [people(2, "standing")] * 2 + [[]] * 2))
    assert caps == [(0.0, 4.0, "Six people: six walk, two stand."), (4.0, 6.0, "Nothing notable seen or heard.")]
    assert captions(run([people(4)[:1] + people(3)[1:]] * 2)) == [(0.0, 2.0, "Four people walk.")]   # all but one
    assert captions(run([people(5)[:1] + people(2)[1:]] * 2)) == [(0.0, 2.0, "Five people, two of them walk.")]
    for _, _, text in caps:
        assert len(text) <= MAX_CHARS and not any(j in text.lower() for j in JARGON)


def test_counts_do_not_split_a_run_and_the_most_seen_in_one_cell_is_told():
    caps = captions(run([people(4), people(6), people(5)]))
    assert caps == [(0.0, 3.0, "Six people walk.")]


def test_speech_is_quoted_in_the_caption_of_its_run_when_the_transcript_arrives_later():
    said = Observation("caption", "judge a book by its cover", 0.6, "transcripts:pocketsphinx", method="asr",
                       operator="transcripts", span=(1.2, 3.4))
    senti = Observation("sentiment", "positive", 0.8, "speech_sentiment:vader", modality="speech",
                        operator="speech_sentiment", span=(1.2, 3.4),
                        values=(("negative", 0.0), ("neutral", 0.2), ("positive", 0.8), ("valence", 0.7),
                                ("arousal", 0.3)))
    per_cell = [[FACE], [FACE, SPEECH], [FACE, SPEECH], [FACE, SPEECH], [FACE, said, senti], [FACE]]
    drafts = run(per_cell)
    caps = captions(drafts)
    assert (1.0, 4.0, "Two faces; someone says: 'judge a book by its cover'.") in caps
    assert [c for c in caps if c[0] == 0.0] == [(0.0, 1.0, "Two faces.")]
    # the fused sentiment of that run follows what was said
    fused = [d for d in drafts if d.kind == "sentiment" and d.fields["modality"] == "audiovisual"]
    assert [(d.t_start, d.t_end, d.fields["label"]) for d in fused] == [(1.0, 4.0, "positive")]
    # a face in view while speech is heard: speaking, joining the two observations
    (speaking,) = [d for d in drafts if d.kind == "event" and d.fields["label"] == "speaking"]
    assert (speaking.t_start, speaking.t_end, speaking.fields["modality"], speaking.fields["detail"]) == \
        (1.0, 4.0, "audiovisual", "face+speech")
    # the transcript stays a record of its own, with its own times
    assert [(d.t_start, d.t_end) for d in drafts if d.kind == "caption" and d.fields["method"] == "asr"] == \
        [(1.2, 3.4)]


def test_no_speaking_when_speech_and_faces_are_in_different_cells():
    drafts = run([[FACE], [FACE], [SPEECH], [SPEECH]])
    assert not [d for d in drafts if d.kind == "event" and d.fields["label"] == "speaking"]


def test_weak_evidence_is_neutral_and_no_evidence_no_sentiment():
    weak = Observation("sentiment", "positive", 0.1, "speech_sentiment:vader", modality="speech",
                       operator="speech_sentiment", span=(0.0, 1.0),
                       values=(("negative", 0.0), ("neutral", 0.9), ("positive", 0.1), ("valence", 0.05),
                               ("arousal", 0.1)))
    drafts = run([[SPEECH, weak], []])
    fused = [d.fields["label"] for d in drafts if d.kind == "sentiment" and d.fields["modality"] == "audiovisual"]
    assert fused == ["neutral"]
    assert not [d for d in run([[sound("Dog")]]) if d.kind == "sentiment"]


def test_descriptions_are_deterministic_and_cut_at_the_longest_record():
    per_cell = [people(3)] * 7
    a, b = captions(run(per_cell, max_cells=3)), captions(run(per_cell, max_cells=3))
    assert a == b == [(0.0, 3.0, "Three people walk."), (3.0, 6.0, "Three people walk."),
                      (6.0, 7.0, "Three people walk.")]
    assert captions(run([[]])) == [(0.0, 1.0, "Nothing notable seen or heard.")]


def test_a_one_cell_miss_does_not_cut_the_description_but_a_lasting_change_does():
    # the detector misses everyone for one cell: still one run
    assert captions(run([people(5)] * 3 + [[]] + [people(5)] * 2)) == [(0.0, 6.0, "Five people walk.")]
    # two cells of a different scene start a new caption where the change began
    assert captions(run([people(5)] * 3 + [[]] * 2 + [people(5)])) == \
        [(0.0, 3.0, "Five people walk."), (3.0, 5.0, "Nothing notable seen or heard."), (5.0, 6.0, "Five people walk.")]
    # the end of the stream: a change in its last cell is still described
    assert captions(run([people(5)] * 3 + [[]])) == [(0.0, 3.0, "Five people walk."),
                                                     (3.0, 4.0, "Nothing notable seen or heard.")]
