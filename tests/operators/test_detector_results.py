"""What every detector returns: shapes, dtypes, method, modality, times, and a state that feeds the next call."""

import numpy as np
import pytest
import torch

from operators.detectors.base import DetectorResult
from operators.registry import build, list_operators
from tests.media import MediaSpec
from tests.operators.cells import rendered_cells

DETECTORS = sorted(s.name for s in list_operators("detector"))


@pytest.fixture(scope="module")
def cells():
    return rendered_cells(MediaSpec(duration_s=4, flashes=(1.0,), cuts=(2.0,), clicks=(3.0,),
                                    tones=((2.0, 0.5, 440.0),)))


@pytest.mark.parametrize("name", DETECTORS)
def test_result_contract_and_state_round_trip(name, cells):
    from operators.registry import get_spec

    spec = get_spec(name)
    if spec.weights_status is not None and not spec.weights_status(spec.config_cls())[0]:
        pytest.skip(f"{name}: its weights are not on this machine")     # e.g. PANNs / wav2vec2 for standard
    det = build(name)
    res, state = det(*cells, None)
    T, L = 4, len(res.labels)
    assert isinstance(res, DetectorResult) and L >= 1 and all(isinstance(x, str) for x in res.labels)
    assert res.scores.shape == res.fired.shape == res.times.shape == (T, L)
    assert res.scores.dtype == torch.float32 and res.fired.dtype == torch.bool and res.times.dtype == torch.float32
    assert res.method and res.modality in ("visual", "audio", "audiovisual")
    assert torch.isnan(res.times[~res.fired]).all()               # times only where something fired
    fired_times = res.times[res.fired]
    assert ((fired_times[~torch.isnan(fired_times)] >= 0) & (fired_times[~torch.isnan(fired_times)] < 1)).all()
    for v in res.extras.values():
        assert v.shape[0] == T
    # the state of one call feeds the next; the same cells again give the same decisions per cell
    again, _ = det(*cells, state)
    assert again.fired.shape == (T, L)
    assert [e[1] for e in res.events()] == [res.labels[l] for t, l in torch.nonzero(res.fired).tolist()]


def test_numpy_and_torch_inputs_give_the_same_result(cells):
    det = build("flash")
    a, _ = det(*cells, None)
    b, _ = det(*(torch.from_numpy(np.ascontiguousarray(x)) for x in cells), None)
    assert torch.equal(a.fired, b.fired) and torch.equal(a.scores, b.scores)


def test_missing_cascade_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.xml: Haar cascade not found"):
        build("faces", cascade=str(tmp_path / "nope.xml"))
