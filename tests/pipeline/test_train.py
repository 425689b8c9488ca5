"""Training and evaluation: labels onto the grid, metrics, a short run that learns, files end to end."""

import json

import numpy as np
import pytest

from operators.fusion import Bundle
from pipeline.cli import main
from pipeline.knowntruth.dataset import EVENTS, make_cells, make_dataset
from pipeline.training import clips_from_arrays, evaluate, evaluate_clips, train
from pipeline.training.labels import DataError, Vocab, cell_targets, read_labels
from pipeline.training.metrics import average_precision



def test_labels_spread_onto_cells():
    lines = [{"clip": "c", "action": "run", "sentiment": "positive", "caption": "x"},
             {"clip": "c", "t_start": 2.0, "t_end": 3.0, "events": ["beep"], "arousal": 0.7},
             {"clip": "c", "t_start": 3.5, "t_end": 4.5, "events": [{"label": "flash", "modality": "visual"}],
              "action": "jump"}]
    vocab = Vocab.from_lines(lines)
    assert vocab.events == ["beep", "flash"] and vocab.event_modalities == ["audiovisual", "visual"]
    tg = cell_targets(lines, 6, vocab, hop_s=1.0)
    assert tg.events[:, 0].tolist() == [0, 0, 1, 0, 0, 0]
    assert tg.events[:, 1].tolist() == [0, 0, 0, 1, 1, 0]        # [3.5, 4.5) overlaps cells 3 and 4
    assert tg.events_known.all()
    assert [vocab.actions[i] for i in tg.action] == ["run", "run", "run", "jump", "jump", "run"]
    assert tg.arousal[2] == pytest.approx(0.7) and tg.arousal[[0, 1, 3]].isnan().all()
    assert (tg.sentiment == 2).all() and (tg.caption == 0).all()


def test_bad_labels_name_the_file_and_line(tmp_path):
    (tmp_path / "labels.jsonl").write_text('{"clip": "a.mp4", "action": "x"}\n{"action": "y"}\n')
    with pytest.raises(DataError, match=r"labels.jsonl:2: not a JSON object with a 'clip' key"):
        read_labels(tmp_path)
    (tmp_path / "labels.jsonl").write_text('{"clip": "a.mp4", "sentiment": "happy"}\n')
    with pytest.raises(DataError, match=r"labels.jsonl:1: sentiment 'happy'"):
        read_labels(tmp_path)
    with pytest.raises(DataError, match="missing"):
        read_labels(tmp_path / "nowhere")


def test_average_precision():
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0.2, 0.9]), np.array([1, 0])) == pytest.approx(0.5)
    assert np.isnan(average_precision(np.array([0.5]), np.array([0])))


def test_impact_holds_only_when_collision_and_bang_share_a_cell():
    from pipeline.knowntruth.dataset import scenes

    both = collision_only = bang_only = 0
    for s in scenes(60, 8, seed=3):
        for k in range(8):
            impact = "impact" in s.cell_events(k)
            assert impact == (s.visual[k] == "collision" and s.audio[k] == "bang")
            both += impact
            collision_only += s.visual[k] == "collision" and not impact
            bang_only += s.audio[k] == "bang" and not impact
    # each ingredient alone is more common than the pair, so one medium cannot predict it
    assert collision_only > both and bang_only > both > 0


def test_short_training_learns_well_above_chance(trained_bundle):
    bundle, report, fz, _ = trained_bundle
    test = clips_from_arrays(make_cells(16, seed=7), fz)      # unseen scenes
    m = evaluate_clips(bundle, test)
    assert m["n_cells"] == 16 * 8
    assert m["action"]["macro_f1"] > 0.5                      # 5 classes: chance 0.2
    assert m["sentiment"]["macro_f1"] > 0.8                   # needs both media
    for label in ("beep", "noise_burst", "flash", "scene_cut"):
        assert m["event"]["f1"][label] > 0.8, (label, m["event"]["f1"])
    assert m["event"]["mAP"] > 0.8
    assert report.best_epoch >= 1 and len(report.history) == 40
    # impact needs the bang and the collision in the same cell: audio two cells late breaks it
    shifted = evaluate_clips(bundle, test, audio_shift_cells=2)
    assert m["event"]["f1"]["impact"] > 0.7
    assert shifted["event"]["f1"].get("impact", 0.0) < m["event"]["f1"]["impact"] - 0.3


def test_trained_bundle_predicts_what_happens(trained_bundle, tmp_path):
    bundle = trained_bundle.bundle
    bundle.save(tmp_path / "b")
    loaded = Bundle.load(tmp_path / "b")
    clip = make_cells(4, seed=11)[3]
    cells = loaded.predict(clip.frames, clip.frame_mask, clip.audio, clip.audio_mask)
    truth = {ln["t_start"]: {e["label"] for e in ln["events"]} for ln in clip.lines if "t_start" in ln}
    modality = dict(EVENTS)
    hits = 0
    for k, cell in enumerate(cells):
        predicted = {e[0] for e in cell["events"]}
        hits += predicted == truth[float(k)]
        assert all(e[1] == modality[e[0]] for e in cell["events"])
        assert cell["caption"][1].endswith(loaded.model_id)
    assert hits >= 6, (cells, truth)


def test_train_and_evaluate_files_end_to_end(tmp_path, capsys):
    data = tmp_path / "data"
    make_dataset(data, n_clips=6, clip_seconds=4, seed=5)
    with open(data / "labels.jsonl", "a") as f:                  # a listed clip that does not exist
        f.write(json.dumps({"clip": "gone.mp4", "action": "move_left"}) + "\n")
    report = train(data, tmp_path / "bundle", epochs=2, seed=0, progress=False)
    assert report.n_train_clips + report.n_val_clips == 6
    assert len(report.failed_clips) == 1 and "gone.mp4: listed in labels.jsonl but not found" in report.failed_clips[0]
    cached = sorted((data / ".avgrid-cache").glob("*.pt"))
    assert len(cached) == 6
    b = Bundle.load(tmp_path / "bundle")
    assert b.model_id == report.model_id and b.preprocessing["window_cells"] == 8
    m = evaluate(tmp_path / "bundle", data)
    assert m["n_clips"] == 6 and m["n_cells"] == 24 and {"action", "event", "sentiment"} <= m.keys()
    assert [p.stat().st_mtime_ns for p in cached] == [p.stat().st_mtime_ns for p in sorted(
        (data / ".avgrid-cache").glob("*.pt"))]                  # second pass read the cache
    assert main(["eval", "--bundle", str(tmp_path / "bundle"), "--data", str(data)]) == 1   # one input failed
    out = capsys.readouterr().out
    assert f"model {report.model_id}: 6 clips, 24 cells" in out and "failed: " in out
    assert str(evaluate(b, data)) == out.rstrip("\n")        # a loaded Bundle works too; str() is the table
    again = train(data, tmp_path / "bundle2", epochs=2, seed=0, progress=False)
    assert again.model_id.split("@")[1] == report.model_id.split("@")[1]   # same seed, same weights
    assert str(report).startswith(f"saved {report.model_id} to {tmp_path / 'bundle'}: ")
