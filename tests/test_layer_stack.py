"""Students' own designs as layer lists: built, rebuilt from the spec alone, and explained when wrong."""
import pytest
import torch

from helpers.models import build_model, model_spec

LAYERS = [
    {"type": "conv", "out": 16}, {"type": "bn"}, {"type": "relu"},
    {"type": "residual", "out": 32, "stride": 2}, {"type": "se", "reduction": 4},
    {"type": "maxpool", "kernel": 2}, {"type": "dropout", "p": 0.1},
    {"type": "globalpool"}, {"type": "linear", "out": 10},
]


def test_layer_stack_runs_and_rebuilds_from_its_spec():
    torch.manual_seed(0)
    model = build_model("layers", layers=LAYERS).eval()
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10)
    spec = model_spec(model)
    again = build_model(spec["name"], **spec["kwargs"]).eval()
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(again(x), model(x))


def test_flatten_head():
    layers = [{"type": "conv", "out": 8, "stride": 2}, {"type": "relu"}, {"type": "flatten", "size": 16},
              {"type": "linear", "out": 5}]
    assert build_model("layers", layers=layers)(torch.randn(1, 3, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize("layers, message", [
    ([{"type": "conv"}], "missing or wrong argument"),
    ([{"type": "spline"}], "valid types"),
    ([{"type": "linear", "out": 3}], "must follow 'globalpool' or 'flatten'"),
])
def test_bad_descriptions_are_explained(layers, message):
    with pytest.raises(ValueError, match=message):
        build_model("layers", layers=layers)
