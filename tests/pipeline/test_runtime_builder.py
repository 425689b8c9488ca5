"""Record builder: consecutive cells with the same observation become one record; gaps split them."""

from pipeline.records import RECORD_TYPES
from pipeline.runtime.builder import CellSpan, Observation, RecordBuilder

FLASH = Observation("event", "flash", 0.9, "flash:luma-jump", modality="visual")
CUT = Observation("event", "cut", 0.8, "scene_cut:hist", modality="visual")


def pan(score):
    return Observation("action", "pan", score, "camera_motion:flow", top_k=(("pan", score), ("static", 1 - score)))


def feed(builder, per_cell, start=0):
    out = []
    for k, obs in enumerate(per_cell, start):
        out += builder.add(CellSpan(k, float(k), float(k + 1)), obs)
    return out + builder.finish()


def spans(drafts, label):
    return sorted((d.t_start, d.t_end) for d in drafts if d.fields.get("label") == label)


def test_consecutive_cells_merge_and_a_pause_splits():
    drafts = feed(RecordBuilder("s"), [[FLASH], [FLASH], [], [FLASH, CUT], [CUT]])
    assert spans(drafts, "flash") == [(0.0, 2.0), (3.0, 4.0)]
    assert spans(drafts, "cut") == [(3.0, 5.0)]
    assert all(d.stream_id == "s" and d.kind == "event" for d in drafts)


def test_actions_average_scores_and_top_k():
    drafts = feed(RecordBuilder("s"), [[pan(0.8)], [pan(0.6)]])
    (d,) = drafts
    assert (d.t_start, d.t_end, d.fields["label"]) == (0.0, 2.0, "pan")
    assert abs(d.fields["score"] - 0.7) < 1e-9
    assert [t["label"] for t in d.fields["top_k"]] == ["pan", "static"]
    rec = RECORD_TYPES["action"].make(stream_id="s", source="x", t_start=d.t_start, t_end=d.t_end, model=d.model,
                                      run_id="r", wall_start=d.wall_start, **d.fields)
    assert rec.top_k[1].label == "static" and abs(rec.top_k[1].score - 0.3) < 1e-9


def test_gap_closes_open_segments_and_is_an_event():
    b = RecordBuilder("s")
    out = b.add(CellSpan(0, 0.0, 1.0), [FLASH])
    out += b.gap(1.0, 3.0, "reconnect", model="avgrid-runtime/1")
    out += b.add(CellSpan(3, 3.0, 4.0, segment=1), [FLASH])
    out += b.finish()
    assert spans(out, "flash") == [(0.0, 1.0), (3.0, 4.0)]
    assert spans(out, "gap") == [(1.0, 3.0)]


def test_non_consecutive_cells_do_not_merge():
    b = RecordBuilder("s")
    out = b.add(CellSpan(0, 0.0, 1.0), [FLASH]) + b.add(CellSpan(2, 2.0, 3.0), [FLASH]) + b.finish()
    assert spans(out, "flash") == [(0.0, 1.0), (2.0, 3.0)]


def test_same_label_from_different_models_stays_separate():
    other = Observation("event", "flash", 0.5, "bundle:x@1", modality="visual")
    out = feed(RecordBuilder("s"), [[FLASH, other], [FLASH, other]])
    assert sorted(d.model for d in out) == ["bundle:x@1", "flash:luma-jump"]


def test_sentiment_values_are_averaged():
    def sent(neg, pos):
        return Observation("sentiment", "positive", pos, "bundle:x@1",
                           values=(("negative", neg), ("neutral", 1 - neg - pos), ("positive", pos),
                                   ("valence", pos - neg), ("arousal", 0.2)))
    (d,) = feed(RecordBuilder("s"), [[sent(0.1, 0.7)], [sent(0.3, 0.5)]])
    assert d.kind == "sentiment" and abs(d.fields["positive"] - 0.6) < 1e-9 and abs(d.fields["valence"] - 0.4) < 1e-9


def test_long_segments_are_cut_at_max_cells():
    drafts = feed(RecordBuilder("s", max_cells=3), [[FLASH]] * 7)
    assert spans(drafts, "flash") == [(0.0, 3.0), (3.0, 6.0), (6.0, 7.0)]
