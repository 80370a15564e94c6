"""Hidden tests of 03_models, run in the trusted grading process (see helpers/grading/HARNESS.md).

Every test builds the student's models, or trusted models handed to the student's functions, inside
the sandbox through `student`, copies the course's reference weights into them entry by entry (as the
notebook's `copy_weights` does, but here in the trusted process), and compares shapes, parameter
counts and outputs with helpers' reference models run here, in eval and in training mode (an extra
Dropout or a missing layer shows in either). The helpers references and the library equivalents the
specifications forbid are denied in the sandbox; torchvision's BasicBlock cannot be (the ResNet-18
of part 9 is made of it), so the BasicBlock block checks that the student's block is not one.
"""
import torch

from helpers import checks
from helpers.grading.harness import block
from helpers.grading.harness.session import StudentError
from helpers.models import MLP as ReferenceMLP
from helpers.models import BasicBlock as ReferenceBlock
from helpers.models import FiveConvNet as ReferenceFive
from helpers.models import FiveConvNetBN as ReferenceFiveBN
from helpers.models import SEBlock as ReferenceSE

# ----------------------------------------------------------------------------- helpers (trusted side)

TRAINING_MODE_HINT = ("exactly the layers of the specification: no Dropout or other layer that acts differently in "
                      "training mode")


def _images(n=8, seed=0):
    """n normalized-like images (n, 3, 32, 32), standing in for the notebook's `images`."""
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _seeded(cls, *args, seed=0, **kwargs):
    torch.manual_seed(seed)
    return cls(*args, **kwargs)


def _numels(student, remote):
    """[p.numel() for p in remote.parameters()], computed in the sandbox (no tensors travel)."""
    return student.make("builtins.list", student.make("builtins.map", student.make("operator.methodcaller", "numel"),
                                                      remote.parameters()))


def _trainable(student, remote):
    """The number of parameter values with requires_grad, computed from flags read in the sandbox."""
    flags = student.make("builtins.list", student.make("builtins.map", student.make("operator.attrgetter",
                                                                                    "requires_grad"),
                                                       remote.parameters()))
    return sum(n for n, f in zip(_numels(student, remote), flags) if f is True)


def _copy_weights(reference, remote):
    """The notebook's copy_weights, trusted side: reference's state_dict into `remote`, entry by entry."""
    src, dst = list(reference.state_dict().items()), list(remote.state_dict().items())
    if len(src) != len(dst):
        raise AssertionError(
            f"copy_weights: expected {len(src)} parameter and buffer tensors, as in {type(reference).__name__} "
            f"({', '.join(k for k, _ in src)}), got {len(dst)} ({', '.join(str(k) for k, _ in dst)}); "
            "create exactly the layers of the specification")
    state = {}
    for (s_name, s_value), (d_name, d_value) in zip(src, dst):
        if not torch.is_tensor(d_value) or s_value.numel() != d_value.numel():
            raise AssertionError(
                f"copy_weights: expected entry {d_name} to hold {tuple(s_value.shape)} values like the "
                f"reference's {s_name}, got {tuple(getattr(d_value, 'shape', ()))}; check the layers' sizes and "
                "their order")
        state[d_name] = s_value.reshape(d_value.shape).clone()
    remote.load_state_dict(state)
    return remote


def _check_close(got, want, name, atol=1e-6, hint=""):
    """checks.check_close for tensors, with a short message (the largest difference, not the values)."""
    checks.check(torch.is_tensor(got), f"{name}: expected a tensor, got {type(got).__name__}")
    checks.check_shape(got, tuple(want.shape), name, hint=hint)
    diff = (got.detach().double() - want.detach().double()).abs()
    bad = int((~(diff <= atol)).sum())
    if bad:
        raise AssertionError(f"{name}: expected the reference's values (within {atol:g}), got {bad} of {diff.numel()} "
                             f"values off, by up to {float(diff.nan_to_num(float('inf')).max()):.3g}"
                             + (f"; {hint}" if hint else ""))


def _out(remote, x):
    """remote(x) as a detached tensor (fails clearly when the model returns something else)."""
    y = remote(x)
    checks.check(torch.is_tensor(y), f"the model's forward: expected a tensor, got {type(y).__name__}")
    return y.detach()


def _ref_out(model, x):
    with torch.no_grad():
        return model(x)


def _check_output(model, reference, x, name, atol, hint=""):
    """The sandbox's `model` on x against the trusted `reference` on x (the same weights copied into both)."""
    _check_close(_out(model, x), _ref_out(reference, x), name, atol=atol, hint=hint)


def _check_params(student, model, want, call, hint=""):
    """The number of parameter values of the sandbox's `model`, against `want`."""
    checks.check_equal(sum(_numels(student, model)), want, f"the number of parameters of {call}", hint=hint)


def _remote_five(student, batch_norm, num_classes=10):
    """A FiveConvNet(BN) made of trusted torch layers in the sandbox (same state_dict order as helpers')."""
    mk = student.make
    layers = []
    for c_in, c_out, stride in zip([3, 8, 16, 32, 64], [8, 16, 32, 64, 128], [1, 2, 1, 2, 1]):
        layers.append(mk("torch.nn.Conv2d", c_in, c_out, 5, stride=stride, padding=2))
        if batch_norm:
            layers.append(mk("torch.nn.BatchNorm2d", c_out))
        layers.append(mk("torch.nn.ReLU", inplace=True))
    layers.append(mk("torch.nn.MaxPool2d", 2))
    head = [mk("torch.nn.Flatten"), mk("torch.nn.Linear", 2048, 120), mk("torch.nn.ReLU", inplace=True),
            mk("torch.nn.Linear", 120, 84), mk("torch.nn.ReLU", inplace=True), mk("torch.nn.Linear", 84, num_classes)]
    return mk("torch.nn.Sequential", mk("torch.nn.Sequential", *layers), mk("torch.nn.Sequential", *head))


def _class(student, module, name):
    """A handle to the class `module.name` in the sandbox (not an instance)."""
    return student.make("builtins.getattr", student.make("importlib.import_module", module), name)


def _hooks(student, module):
    """The number of forward hooks registered on the sandbox's `module` (its _forward_hooks, read there)."""
    return len(student.make("builtins.getattr", module, "_forward_hooks"))


# ----------------------------------------------------------------------------- 1. conv_output_size

@block("conv_output_size-tests")
def test_conv_output_size(student):
    conv_output_size = student.conv_output_size
    for args, want in [((32, 5, 1, 2), 32), ((32, 5, 2, 2), 16), ((32, 3, 1, 0), 30), ((8, 2, 2, 0), 4),
                       ((7, 3, 2, 1), 4)]:
        checks.check_equal(conv_output_size(*args), want, f"conv_output_size{args}",
                           hint="floor((size + 2*padding - dilation*(kernel-1) - 1) / stride) + 1")
    got = conv_output_size(32, 5, 1, 2)
    checks.check(type(got) is int, f"conv_output_size(32, 5, 1, 2): expected a Python int, got {type(got).__name__}; "
                 "use integer division //")
    for size in (1, 2, 5, 11, 32):
        for k, s, p, d in [(1, 1, 0, 1), (3, 1, 1, 1), (3, 2, 1, 1), (5, 3, 2, 1), (3, 1, 2, 2), (2, 2, 0, 1),
                           (4, 3, 1, 3), (7, 2, 3, 1)]:
            if size + 2 * p < d * (k - 1) + 1:
                what = (f"conv_output_size({size}, {k}, {s}, {p}, {d}): expected a ValueError (the dilated kernel "
                        "does not fit)")
                try:
                    with student.raises("ValueError"):
                        conv_output_size(size, k, s, p, d)
                except StudentError as exc:
                    raise AssertionError(f"{what}, got {exc}") from None
                except AssertionError:
                    raise AssertionError(f"{what}, got none") from None
                continue
            want = torch.nn.functional.conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, k, k),
                                              stride=s, padding=p, dilation=d).shape[-1]
            checks.check_equal(conv_output_size(size, k, s, p, d), want,
                               f"conv_output_size({size}, kernel={k}, stride={s}, padding={p}, dilation={d})",
                               hint="the dilated kernel spans dilation*(kernel-1)+1 pixels; round down")
    checks.check_equal(conv_output_size(32, 3), 30,
                       "conv_output_size(32, 3) with the default stride, padding, dilation")


# ----------------------------------------------------------------------------- 2. count_parameters

@block("count_parameters-tests", deny=["helpers.models.utils.count_parameters"])
def test_count_parameters(student):
    count_parameters, mk = student.count_parameters, student.make
    checks.check_equal(count_parameters(mk("torch.nn.Linear", 10, 5)), 55, "count_parameters(nn.Linear(10, 5))",
                       hint="10 * 5 weights + 5 biases")
    net = mk("torch.nn.Sequential", mk("torch.nn.Conv2d", 3, 8, 3), mk("torch.nn.BatchNorm2d", 8),
             mk("torch.nn.ReLU"), mk("torch.nn.Flatten"), mk("torch.nn.Linear", 8, 2))
    checks.check_equal(count_parameters(net), 3 * 8 * 9 + 8 + 2 * 8 + 8 * 2 + 2,
                       "count_parameters(Conv2d(3, 8, 3), BatchNorm2d(8), ReLU, Flatten, Linear(8, 2))",
                       hint="BatchNorm has 2 parameters per channel; its running statistics are buffers")
    # freeze the first weight only (net[0].weight.requires_grad_(False)), in the sandbox
    first = mk("itertools.islice", net[0].parameters(), 1)
    mk("builtins.list", mk("builtins.map", mk("operator.methodcaller", "requires_grad_", False), first))
    got = count_parameters(net)
    checks.check_equal(got, 8 + 2 * 8 + 8 * 2 + 2, "count_parameters(the same, first weight frozen)",
                       hint="count only parameters with requires_grad True")
    checks.check(type(got) is int, f"count_parameters: expected a Python int, got {type(got).__name__}; "
                 "convert with int(...)")
    shared = mk("torch.nn.Linear", 6, 6)
    checks.check_equal(count_parameters(mk("torch.nn.Sequential", shared, mk("torch.nn.ReLU"), shared)), 42,
                       "count_parameters(a Linear(6, 6) used twice)", hint="a shared parameter counts once: iterate "
                       "over model.parameters(), not over the layers")
    five = _remote_five(student, batch_norm=True)
    for i in range(4):  # features[:4].requires_grad_(False)
        five[0][i].requires_grad_(False)
    reference = ReferenceFiveBN()
    reference.features[:4].requires_grad_(False)
    want = sum(p.numel() for p in reference.parameters() if p.requires_grad)
    checks.check_equal(count_parameters(five), want, "count_parameters(FiveConvNetBN with its first two convolutions "
                       "frozen)", hint="skip parameters with requires_grad False")
    checks.check_equal(count_parameters(mk("torch.nn.ReLU")), 0, "count_parameters(nn.ReLU())")


# ----------------------------------------------------------------------------- 3. MLP

@block("MLP-tests", deny=["helpers.models.mlp.MLP"])
def test_mlp(student):
    images = _images()
    model = student.MLP().eval()
    _check_params(student, model, 563_082, "MLP()", hint="3072 -> 128 -> 256 -> 512 -> 10, each Linear with a bias")
    checks.check_shape(_out(model, images), (8, 10), "MLP()(images (8, 3, 32, 32)).shape",
                       hint="flatten each image first")
    reference = _seeded(ReferenceMLP, seed=1).eval()
    _copy_weights(reference, model)
    _check_output(model, reference, images, "MLP() with the reference's weights, on images", atol=1e-5,
                  hint="ReLU after every Linear but the last, and no softmax at the end")
    model, reference = student.MLP(num_classes=100).eval(), _seeded(ReferenceMLP, num_classes=100, seed=2).eval()
    _check_params(student, model, 609_252, "MLP(num_classes=100)", hint="the last Linear has num_classes outputs")
    _copy_weights(reference, model)
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    _check_output(model, reference, x, "MLP(num_classes=100) with the reference's weights, on random inputs",
                  atol=1e-5, hint="Linear, ReLU, Linear, ReLU, Linear, ReLU, Linear")
    model.train()
    _check_output(model, reference.train(), x, "MLP(num_classes=100) in training mode with the reference's weights",
                  atol=1e-5, hint=TRAINING_MODE_HINT)


# ----------------------------------------------------------------------------- 4. FiveConvNet

@block("FiveConvNet-tests", deny=["helpers.models.convnets.FiveConvNet", "helpers.models.convnets._five_conv_features",
                                  "helpers.models.convnets._five_conv_head"])
def test_five_conv_net(student):
    images = _images()
    model = student.FiveConvNet().eval()
    _check_params(student, model, 529_742, "FiveConvNet()",
                  hint="5x5 kernels, 8/16/32/64/128 channels, biases everywhere, then 2048 -> 120 -> 84 -> 10")
    checks.check_shape(_out(model, images), (8, 10), "FiveConvNet()(images (8, 3, 32, 32)).shape",
                       hint="padding 2 everywhere, stride 2 on convolutions 2 and 4, then a 2x2 max-pool")
    reference = _seeded(ReferenceFive, seed=1).eval()
    _copy_weights(reference, model)
    _check_output(model, reference, images, "FiveConvNet() with the reference's weights, on images", atol=1e-4,
                  hint="check the strides, the ReLUs (none after the last Linear) and the pool")
    model, reference = student.FiveConvNet(num_classes=7).eval(), _seeded(ReferenceFive, num_classes=7, seed=2).eval()
    _check_params(student, model, 529_742 - 85 * 3, "FiveConvNet(num_classes=7)",
                  hint="the last Linear has num_classes outputs")
    _copy_weights(reference, model)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    _check_output(model, reference, x, "FiveConvNet(num_classes=7) with the reference's weights, on random inputs",
                  atol=1e-4, hint="the layer order of the specification")
    _check_output(model, reference, x[:1], "FiveConvNet on a batch of one image", atol=1e-4,
                  hint="flatten with nn.Flatten() or x.flatten(1), not x.view(-1, ...) / squeeze()")
    model.train()
    _check_output(model, reference.train(), x, "FiveConvNet(num_classes=7) in training mode with the reference's "
                  "weights", atol=1e-4, hint=TRAINING_MODE_HINT)


# ----------------------------------------------------------------------------- 5. FiveConvNetBN

@block("FiveConvNetBN-tests", deny=["helpers.models.convnets.FiveConvNetBN",
                                    "helpers.models.convnets._five_conv_features",
                                    "helpers.models.convnets._five_conv_head"])
def test_five_conv_net_bn(student):
    images = _images()
    model = student.FiveConvNetBN()
    _check_params(student, model, 530_238, "FiveConvNetBN()",
                  hint="one BatchNorm2d(c_out) per convolution, which keeps its bias")
    reference = _seeded(ReferenceFiveBN, seed=1)
    _copy_weights(reference, model)
    _check_output(model, reference, images, "FiveConvNetBN() in training mode with the reference's weights",
                  atol=1e-4, hint="BatchNorm right after each convolution, before the ReLU")
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 + 1
    model, reference = student.FiveConvNetBN(num_classes=4), _seeded(ReferenceFiveBN, num_classes=4, seed=2)
    _copy_weights(reference, model)
    _check_output(model, reference, x, "FiveConvNetBN(num_classes=4) in training mode with the reference's weights, "
                  "on random inputs", atol=1e-4,
                  hint="exactly the layers of the specification: no Dropout, BatchNorm before each ReLU")
    # that training-mode pass updated the running statistics of both
    model.eval()
    reference.eval()
    _check_output(model, reference, x, "FiveConvNetBN(num_classes=4) in eval mode after one training batch, against "
                  "the reference", atol=1e-4, hint="use nn.BatchNorm2d with its default momentum and eps, after each "
                  "convolution")
    _check_close(_out(model, x[:2]), _out(model, x)[:2], "FiveConvNetBN in eval mode: two images alone against "
                 "the same two in a batch of six", atol=1e-4, hint="use nn.BatchNorm2d, which uses its running "
                 "statistics in eval mode")
    bn_class = _class(student, "torch.nn", "BatchNorm2d")
    modules = student.make("builtins.list", model.modules())
    count = sum(student.make("builtins.isinstance", m, bn_class) is True for m in modules)
    checks.check_equal(count, 5, "the number of nn.BatchNorm2d layers in FiveConvNetBN", hint="one after each "
                       "convolution")


# ----------------------------------------------------------------------------- 6. BasicBlock

@block("BasicBlock-tests", deny=["helpers.models.resnet.BasicBlock"])
def test_basic_block(student):
    x = torch.randn(2, 64, 16, 16, generator=torch.Generator().manual_seed(1))
    block_ = student.BasicBlock(64, 128, 2).eval()
    _check_params(student, block_, 230_144, "BasicBlock(64, 128, stride=2)", hint="two 3x3 convolutions without "
                  "bias, two BatchNorms, and a 1x1 projection with BatchNorm")
    out = _out(block_, x)
    checks.check_shape(out, (2, 128, 8, 8), "BasicBlock(64, 128, 2)(x of shape (2, 64, 16, 16)).shape",
                       hint="stride on conv1 and on the projection, padding 1 on the 3x3 convolutions")
    checks.check(bool((out >= 0).all()), "BasicBlock(64, 128, 2): expected outputs >= 0, got negative values; apply "
                 "a ReLU after adding the shortcut")
    # torchvision's block cannot be denied (part 9's ResNet-18 is built from it): check it is not used
    torchvision_block = _class(student, "torchvision.models.resnet", "BasicBlock")
    for m in student.make("builtins.list", block_.modules()):
        checks.check(student.make("builtins.isinstance", m, torchvision_block) is False,
                     "BasicBlock: expected your own block, got one built from torchvision.models.resnet.BasicBlock; "
                     "write the layers and forward of the specification yourself")
    reference = _seeded(ReferenceBlock, 64, 128, 2, seed=1).eval()
    _copy_weights(reference, block_)
    _check_output(block_, reference, x, "BasicBlock(64, 128, 2) with the reference's weights", atol=1e-4,
                  hint="relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))")
    for c_in, c_out, stride, expected in [(64, 64, 1, 73_984), (32, 32, 2, 19_648), (16, 32, 1, 14_528)]:
        block_ = student.BasicBlock(c_in, c_out, stride).eval()
        reference = _seeded(ReferenceBlock, c_in, c_out, stride, seed=c_in + stride).eval()
        _check_params(student, block_, expected, f"BasicBlock({c_in}, {c_out}, stride={stride})",
                      hint="a projection shortcut only when stride != 1 or the channel count changes, else "
                      "nn.Identity()")
        _copy_weights(reference, block_)
        x = torch.randn(3, c_in, 10, 6, generator=torch.Generator().manual_seed(c_out + stride))
        _check_output(block_, reference, x, f"BasicBlock({c_in}, {c_out}, {stride}) with the reference's weights, "
                      "on (3, C, 10, 6) inputs", atol=1e-4)
        block_.train()
        _check_output(block_, reference.train(), x, f"BasicBlock({c_in}, {c_out}, {stride}) in training mode with "
                      "the reference's weights", atol=1e-4,
                      hint="exactly the layers of the specification: no Dropout; BatchNorm2d as given")
    block_, reference = student.BasicBlock(8, 8).eval(), _seeded(ReferenceBlock, 8, 8, seed=9).eval()
    with torch.no_grad():
        reference.bn2.weight.zero_()
        reference.bn2.bias.zero_()
    _copy_weights(reference, block_)
    x = torch.randn(2, 8, 5, 5, generator=torch.Generator().manual_seed(9))
    _check_close(_out(block_, x), torch.relu(x), "BasicBlock(8, 8) whose residual branch outputs 0", atol=1e-6,
                 hint="with an identity shortcut the block returns relu(x) when F(x) = 0")


# ----------------------------------------------------------------------------- 7. SEBlock

@block("SEBlock-tests", deny=["helpers.models.resnet.SEBlock", "torchvision.ops.misc.SqueezeExcitation"])
def test_se_block(student):
    se = student.SEBlock(64, 16)
    _check_params(student, se, 580, "SEBlock(64, 16)", hint="Linear(64, 4) and Linear(4, 64), both with biases")
    x = torch.rand(2, 64, 6, 6, generator=torch.Generator().manual_seed(1)) + 0.5  # positive: x / out is the gate
    out = _out(se, x)
    checks.check_shape(out, (2, 64, 6, 6), "SEBlock(64, 16)(x of shape (2, 64, 6, 6)).shape",
                       hint="return x scaled per channel, not the gate")
    gate = out / x
    checks.check(bool((gate.amax(dim=(2, 3)) - gate.amin(dim=(2, 3)) < 1e-5).all()),
                 "SEBlock: expected out / x to be one number per image and channel (a gate of shape (N, C, 1, 1)), "
                 "got values that change across positions; reshape the gate to (N, C, 1, 1) before multiplying")
    checks.check(bool(((gate > 0) & (gate < 1)).all()), "SEBlock: expected gate values in (0, 1), got others; end "
                 "the excitation with a sigmoid")
    reference = _seeded(ReferenceSE, 64, 16, seed=1)
    _copy_weights(reference, se)
    _check_output(se, reference, x, "SEBlock(64, 16) with the reference's weights", atol=1e-5,
                  hint="mean over H and W, fc1, ReLU, fc2, sigmoid, then x * gate")
    for c, r, expected in [(64, 16, 580), (8, 16, 25), (48, 4, 1212)]:
        se, reference = student.SEBlock(c, r), _seeded(ReferenceSE, c, r, seed=c)
        _check_params(student, se, expected, f"SEBlock({c}, {r})", hint="hidden = max(channels // reduction, 1)")
        _copy_weights(reference, se)
        x = torch.randn(3, c, 7, 4, generator=torch.Generator().manual_seed(c))
        _check_output(se, reference, x, f"SEBlock({c}, {r}) with the reference's weights, on (3, C, 7, 4) inputs",
                      atol=1e-5, hint="mean over H and W, fc1, ReLU, fc2, sigmoid, then x * gate")
        se.eval()
        _check_output(se, reference.eval(), x, f"SEBlock({c}, {r}) in eval mode with the reference's weights",
                      atol=1e-5, hint="no layer that acts differently in eval mode")


# ----------------------------------------------------------------------------- 8. feature_maps

@block("feature_maps-tests")
def test_feature_maps(student):
    images = _images()
    reference = _seeded(ReferenceFive, seed=1).eval()
    model = _remote_five(student, batch_norm=False).eval()
    model.load_state_dict(dict(zip(model.state_dict(), reference.state_dict().values())))
    maps = student.feature_maps(model, model[0][0], images)
    checks.check_shape(maps, (8, 8, 32, 32), "feature_maps(FiveConvNet, features[0], images).shape",
                       hint="return the hooked layer's output, not the model's")
    _check_close(maps, _ref_out(reference.features[0], images), "feature_maps(FiveConvNet, features[0], images)",
                 atol=1e-5, hint="store the `output` argument of the hook")
    hooks = _hooks(student, model[0][0])
    checks.check(hooks == 0, f"feature_maps: expected the hook to be removed afterwards, got {hooks} still "
                 "registered; call handle.remove()")
    checks.check(not maps.requires_grad, "feature_maps: expected a detached tensor, got one that requires grad; "
                 "run under torch.no_grad() or .detach() it")

    reference = _seeded(ReferenceFiveBN, seed=2)
    model = _remote_five(student, batch_norm=True)
    model.load_state_dict(dict(zip(model.state_dict(), reference.state_dict().values())))
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    model(x)  # one training-mode pass: running statistics != defaults
    _ref_out(reference, x)
    maps = student.feature_maps(model, model[0][4], images)
    checks.check(model.training is True, "feature_maps: expected a model in training mode to be back in training "
                 "mode afterwards, got eval mode; call model.train(was_training) at the end")
    modes = student.make("builtins.list", student.make("builtins.map", student.make("operator.attrgetter", "training"),
                                                       model.modules()))
    checks.check(all(m is True for m in modes), f"feature_maps: expected every layer back in training mode afterwards, "
                 f"got {modes.count(False)} of {len(modes)} in eval mode; call model.train(was_training), which sets "
                 "the mode of every layer")
    _check_close(maps, _ref_out(reference.eval().features[:5], images),
                 "feature_maps(FiveConvNetBN, features[4], images)", atol=1e-5,
                 hint="run the model in eval mode (BatchNorm with running statistics), and store a copy of "
                 "the output (output.detach().clone()): the in-place ReLU after it changes it")

    # a model that raises after the hooked layer ran: Linear(7, 3) cannot take the (N, 2, 32, 32) map
    bad = student.make("torch.nn.Sequential", student.make("torch.nn.Conv2d", 3, 2, 1),
                       student.make("torch.nn.Linear", 7, 3))
    try:
        student.feature_maps(bad, bad[0], images)
    except AssertionError:
        pass
    hooks = _hooks(student, bad[0])
    checks.check(hooks == 0, "feature_maps: expected the hook removed even when the model raises, got it still "
                 "registered; remove it in a finally: block")


# ----------------------------------------------------------------------------- 9. trainable_counts

@block("trainable_counts-tests")
def test_trainable_counts(student):
    model = student.make("helpers.models.TransferResNet18", num_classes=10, freeze="head", pretrained=False)
    counts = student.trainable_counts(model)
    checks.check(isinstance(counts, dict), f"trainable_counts(model): expected a dict, got {type(counts).__name__}")
    checks.check_equal(sorted(counts), ["head", "last_stage", "none"], "the keys of trainable_counts(model)",
                       hint="one entry per freeze mode")
    checks.check_equal([counts[m] for m in ("head", "last_stage", "none")], [5_130, 8_398_858, 11_181_642],
                       "trainable_counts(TransferResNet18(10)) for head, last_stage, none",
                       hint="call model.set_freeze(mode), then count the parameters with requires_grad")
    checks.check_equal(model.freeze, "head", "model.freeze after trainable_counts(model)",
                       hint="restore the mode the model was in")

    model = student.make("helpers.models.TransferResNet18", num_classes=100, freeze="last_stage", pretrained=False)
    counts = student.trainable_counts(model, modes=("none", "head"))
    want = {"none": 11_227_812, "head": 51_300}
    checks.check(counts == want, f"trainable_counts(TransferResNet18(100), modes=('none', 'head')): expected {want}, "
                 f"got {counts}; count for the modes asked for, with this model's head")
    checks.check_equal(model.freeze, "last_stage", "model.freeze after trainable_counts on a 'last_stage' model",
                       hint="restore the mode the model was in, not 'head'")
    checks.check_equal(_trainable(student, model), 8_445_028,
                       "trainable parameters after trainable_counts on a 'last_stage' model",
                       hint="call model.set_freeze(previous mode) at the end")
