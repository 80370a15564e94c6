"""Architecture fingerprints decide "the same model" by structure: the handed-out and zoo designs are
recognised under any name (a registry name or a `layers` rewrite) within 25% of their widths, the source
solution's own design is not, and every design the 06 notebook shows is on the handed-out list."""
import ast
import json
import re

import pytest
import torch
import torch.nn.functional as F

from helpers.config import PROJECT_ROOT
from helpers.grading import challenge
from helpers.grading.fingerprint import describe, fingerprint, from_wire, matches, to_wire
from helpers.models import build_model


def fp_of(name, **kwargs):
    with torch.device("meta"):
        return fingerprint(build_model(name, **kwargs))


def fastnet_as_layers(scale=1.0, extra=()):
    """FastNet rewritten as a layers description: whitening conv, GELU, three conv-pool-BN-GELU-conv-BN-GELU
    blocks, a global pool and the head (widths times `scale`)."""
    w = [round(64 * scale), round(256 * scale), round(256 * scale)]
    layers = [{"type": "conv", "out": 24, "kernel": 2, "padding": 0}, {"type": "gelu"}]
    for width in w:
        layers += [{"type": "conv", "out": width}, {"type": "maxpool"}, {"type": "bn"}, {"type": "gelu"},
                   {"type": "conv", "out": width}, {"type": "bn"}, {"type": "gelu"}]
    layers += [*extra, {"type": "globalpool"}, {"type": "linear", "out": 10}]
    return layers


def resnet18_as_layers():
    layers = [{"type": "conv", "out": 64}, {"type": "bn"}, {"type": "relu"}]
    for i, width in enumerate((64, 128, 256, 512)):
        layers += [{"type": "residual", "out": width, "stride": 1 if i == 0 else 2}, {"type": "residual", "out": width}]
    return layers + [{"type": "globalpool"}, {"type": "linear", "out": 10}]


def solution_recipes():
    """The source solution's two recipes in full mode (the designs the top tiers are meant for)."""
    from helpers.grading.challenge import given_namespace, run_mode
    with run_mode(False):
        ns = given_namespace(answers=("challenge_recipe-answer", "cifar100_recipe-answer"))
        return ns["complete_recipe"](ns["challenge_recipe"]()), ns["complete_recipe"](ns["cifar100_recipe"]())


def test_a_rewrite_as_layers_is_the_same_model():
    assert matches(fp_of("layers", layers=fastnet_as_layers()), fp_of("fastnet"))
    assert matches(fp_of("layers", layers=resnet18_as_layers()), fp_of("resnet18"))
    assert challenge.match_reference(fp_of("layers", layers=fastnet_as_layers()), 10) == "the handed-out fastnet"
    assert challenge.match_reference(fp_of("layers", layers=resnet18_as_layers()), 10) == "the handed-out resnet18"


@pytest.mark.parametrize("scale, same", [(1.2, True), (0.8, True), (1.25, True), (1.3, False), (0.7, False)])
def test_widths_within_25_percent_count_as_the_same_model(scale, same):
    assert matches(fp_of("layers", layers=fastnet_as_layers(scale)), fp_of("fastnet")) is same
    assert matches(fp_of("fastnet", widths=[round(64 * scale), round(256 * scale), round(256 * scale)]),
                   fp_of("fastnet")) is same


def test_another_arrangement_is_not_the_same_model():
    reference = fp_of("fastnet")
    deeper = fastnet_as_layers(extra=[{"type": "conv", "out": 256}, {"type": "bn"}, {"type": "gelu"}])
    assert not matches(fp_of("layers", layers=deeper), reference)  # a layer more
    assert not matches(fp_of("resnet18"), fp_of("se_resnet"))  # SE blocks add layers
    assert not matches(fp_of("mlp", hidden=(128, 256)), fp_of("mlp"))
    assert not matches([("conv", 8), ("linear", 10)], [("conv", 8), ("conv", 8), ("linear", 10)])
    assert not matches([("conv", 8), ("conv", 16)], [("conv", 8), ("linear", 16)])  # another kind of layer


class HandWrittenFastNet(torch.nn.Module):
    """FastNet's weights as bare parameters used with functional calls (registered in a shuffled order),
    with one child that does nothing: no layer of it is a Conv2d, and its only leaf is an Identity."""

    def __init__(self, scale=1.0):
        super().__init__()
        widths = [round(64 * scale), round(256 * scale), round(256 * scale)]
        shapes = [(24, 3, 2, 2)]
        c = 24
        for w in widths:
            shapes += [(w, c, 3, 3), (w, w, 3, 3)]
            c = w
        order = [3, 0, 6, 1, 5, 2, 4]
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(shapes[i]) * 0.01) for i in order])
        self.order = order
        self.head = torch.nn.Parameter(torch.zeros(10, c))
        self.nothing = torch.nn.Identity()

    def forward(self, x):
        w = [self.weights[self.order.index(i)] for i in range(7)]
        x = F.gelu(F.conv2d(self.nothing(x), w[0]))
        for i in range(3):
            x = F.gelu(F.batch_norm(F.max_pool2d(F.conv2d(x, w[1 + 2 * i], padding=1), 2), None, None, training=True))
            x = F.gelu(F.conv2d(x, w[2 + 2 * i], padding=1))
        return F.linear(x.mean((2, 3)), self.head)


@pytest.mark.parametrize("case", ["relu after each pool", "no batchnorm", "functional", "functional, 20% wider"])
def test_small_changes_and_rewrites_by_hand_are_the_same_model(case):
    """What a student might try to escape the cap: parameter-free layers added or moved, the
    normalization dropped, the whole network written with functional calls."""
    if case == "relu after each pool":
        layers = []
        for layer in fastnet_as_layers():
            layers += [layer, {"type": "relu"}] if layer["type"] == "maxpool" else [layer]
        fp = fp_of("layers", layers=layers)
    elif case == "no batchnorm":
        fp = fp_of("layers", layers=[layer for layer in fastnet_as_layers() if layer["type"] != "bn"])
    else:
        fp = fingerprint(HandWrittenFastNet(1.2 if "wider" in case else 1.0))
    assert fp != fp_of("fastnet")
    assert challenge.match_reference(fp, 10) == "the handed-out fastnet", describe(fp)


def test_activations_and_dropout_do_not_make_a_new_design():
    relu = [{"type": "conv", "out": 32}, {"type": "bn"}, {"type": "relu"}, {"type": "globalpool"},
            {"type": "linear", "out": 10}]
    gelu = [{**layer, "type": "gelu"} if layer["type"] == "relu" else layer for layer in relu]
    dropout = relu[:3] + [{"type": "dropout", "p": 0.2}] + relu[3:]
    twice = relu[:3] + [{"type": "relu"}, {"type": "gelu"}] + relu[3:]
    for same in (gelu, dropout, twice):
        assert matches(fp_of("layers", layers=same), fp_of("layers", layers=relu)), same


def test_the_fingerprint_follows_the_forward_pass():
    fp = fp_of("fastnet")
    assert fp[:8] == [("conv", 24), ("act", None), ("conv", 64), ("pool", None), ("norm", 64), ("act", None),
                      ("conv", 64), ("norm", 64)]
    assert fp[-2:] == [("globalpool", None), ("linear", 10)]
    model = build_model("simple_cnn")
    model.train()
    assert fingerprint(model) == fp_of("simple_cnn") and model.training  # its mode is restored
    assert "(25 layers)" in describe(fp)


def test_zoo_models_are_references_for_the_classes_graded():
    assert challenge.match_reference(fp_of("resnet18", num_classes=100), 100) == "the handed-out resnet18"
    assert challenge.match_reference(fp_of("se_resnet", num_classes=100), 100) == "the zoo model se_resnet"
    assert challenge.match_reference(fp_of("mlp", num_classes=10), 10) == "the zoo model mlp"
    assert challenge.match_reference(fp_of("transfer_resnet18", num_classes=10, pretrained=False), 10) \
        == "the handed-out resnet18"  # a ResNet-18 under another name
    labels = [label for label, _ in challenge.reference_fingerprints(10)]
    assert len(labels) == len(set(labels)) and "the zoo model layers" not in labels


def test_the_source_solution_is_its_own_design():
    for recipe, classes in zip(solution_recipes(), (10, 100)):
        name, kwargs = challenge.model_for_classes(recipe["model"], classes)
        with torch.device("meta"):
            model = build_model(name, **kwargs)
        assert challenge.match_reference(fingerprint(model), classes) is None, describe(fingerprint(model))
        assert sum(p.numel() for p in model.parameters()) <= 20_000_000


def _notebook_designs():
    """Every model entry the 06 notebook's text shows: ```python blocks and inline `{"model": ...}` recipes."""
    nb = json.loads((PROJECT_ROOT / challenge.SOURCE_NOTEBOOK).read_text(encoding="utf-8"))
    found = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        snippets = re.findall(r"```python\n(.*?)```", text, re.S) + re.findall(r"`(\{\"model\".*?\})`", text, re.S)
        for snippet in snippets:
            value = ast.literal_eval(snippet.replace("\n", " "))
            found.append(value["model"] if "model" in value else value)
    return found


def test_every_design_the_notebook_shows_is_capped():
    designs = _notebook_designs()
    assert len(designs) >= 2, designs
    for entry in designs:
        name, kwargs = challenge.model_for_classes(entry, 10)
        with torch.device("meta"):
            fp = fingerprint(build_model(name, **kwargs))
        assert challenge.match_reference(fp, 10), f"the notebook shows {entry['name']!r} but it is not capped"
    assert challenge.HANDED_OUT_RECIPES["fastnet"] in [ast.literal_eval(s.replace("\n", " ")) for s in re.findall(
        r"`(\{\"model\".*?\})`", "".join("".join(c["source"]) for c in json.loads(
            (PROJECT_ROOT / challenge.SOURCE_NOTEBOOK).read_text())["cells"]), re.S)]


def test_the_wire_form_is_checked():
    fp = fp_of("fiveconv_bn")
    assert from_wire(json.loads(json.dumps(to_wire(fp)))) == fp
    for bad in (None, "conv", [["conv"]], [["conv", -1]], [["conv", 1.5]], [["", 3]], [["x" * 41, None]],
                [[3, 3]], [["act", None]] * 10_001, [["conv", True]]):
        assert from_wire(bad) is None, bad
