"""Hidden tests of 04_training, run in the trusted grading process (see helpers/grading/HARNESS.md).

train_one_epoch and evaluate get live objects built inside the sandbox by trusted constructors
(`student.make`): small torch models loaded with weights made here, optimizers over their
parameters, GradScalers and loss functions (PyTorch's C-level cross-entropy, so that
F.cross_entropy itself can be denied for the label-smoothing block); loaders are lists of (x, y)
tensors. After each call the model's state_dict comes back and is compared with the same epoch run
here by a plain reference loop. label_smoothing_cross_entropy, EarlyStopping and warmup_cosine_lr
are compared with PyTorch's F.cross_entropy, the specified behaviour and helpers.schedules.cosine.
The helpers references and the library functions the specifications forbid are denied in the sandbox.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from helpers import checks
from helpers.grading.harness import block
from helpers.schedules import cosine as reference_cosine

CPU = torch.device("cpu")


# ----------------------------------------------------------------------------- helpers (trusted side)

def _attr(student, obj, path):
    """obj.<path>, read in the sandbox (numbers index a Sequential)."""
    return student.make("operator.attrgetter", path)(obj)


def _cross_entropy(student, label_smoothing=0.0):
    """loss_fn(logits, y): mean cross-entropy, in the sandbox, without F.cross_entropy (denied there)."""
    torch_module = student.make("importlib.import_module", "torch")
    kernel = _attr(student, torch_module, "_C._nn.cross_entropy_loss")
    return student.make("functools.partial", kernel, reduction=1, label_smoothing=label_smoothing)


def _ce(label_smoothing=0.0):
    return lambda logits, y: F.cross_entropy(logits, y, label_smoothing=label_smoothing)


def _remote_copy(student, local, spec):
    """nn.Sequential of `spec` [(class name, args), ...] built in the sandbox, holding local's state."""
    remote = student.make("torch.nn.Sequential", *[student.make(f"torch.nn.{name}", *args) for name, *args in spec])
    remote.load_state_dict(local.state_dict())
    return remote


def _local(spec, seed):
    torch.manual_seed(seed)
    return nn.Sequential(*[getattr(nn, name)(*args) for name, *args in spec])


LINEAR4 = [("Flatten",), ("Linear", 48, 4)]
LINEAR5 = [("Flatten",), ("Linear", 48, 5)]


def _reference_epoch(model, batches, lr, loss_fn=F.cross_entropy):
    """One epoch of plain SGD, the specification's order: zero_grad, forward, loss, backward, step."""
    sgd = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    total = hits = 0.0
    for xb, yb in batches:
        sgd.zero_grad()
        out = model(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        sgd.step()
        total += loss.item() * len(yb)
        hits += (out.argmax(1) == yb).sum().item()
    n = sum(len(yb) for _, yb in batches)
    return total / n, hits / n


def _check_state(remote, local, what, hint="", atol=1e-6):
    """Every entry of remote.state_dict() is close to local's."""
    got, want = remote.state_dict(), local.state_dict()
    checks.check_equal(sorted(got), sorted(want), f"the state_dict keys of the model after {what}")
    for key, value in want.items():
        _check_close(got[key], value, f"model.state_dict()[{key!r}] after {what}", atol=atol, hint=hint)


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


def _check_pair(got, name):
    checks.check(isinstance(got, tuple) and len(got) == 2 and all(isinstance(v, float) for v in got),
                 f"{name}: expected a tuple of two Python floats (mean_loss, accuracy), got {got!r}; turn a 0-dim "
                 "tensor into a float with .item()")


def _batches13(seed, classes=5):
    torch.manual_seed(seed)
    xs, ys = torch.randn(13, 3, 4, 4), torch.randint(0, classes, (13,))
    return xs, ys, [(xs[:8], ys[:8]), (xs[8:], ys[8:])]


def _epoch(student, seed, batches, loss_fn, device, **kwargs):
    """A LINEAR5 model made here (seeded), copied into the sandbox and trained there for one epoch by the student's
    train_one_epoch with SGD(lr=0.3): (the local model, the sandbox's model, what train_one_epoch returned)."""
    local = _local(LINEAR5, seed)
    model = _remote_copy(student, local, LINEAR5)
    got = student.train_one_epoch(model, batches, student.make("torch.optim.SGD", model.parameters(), lr=0.3), loss_fn,
                                  device, **kwargs)
    return local, model, got


# ----------------------------------------------------------------------------- 1. train_one_epoch

@block("train_one_epoch-tests", deny=["helpers.train._train_epoch", "helpers.train.fit"])
def test_train_one_epoch_visible(student):
    train_one_epoch, mk = student.train_one_epoch, student.make
    ce = _cross_entropy(student)
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 4, 4), torch.arange(16) % 4
    # One fixed tiny batch, trained on again and again: the loss must fall and the batch be learned.
    model = _remote_copy(student, _local(LINEAR4, 10), LINEAR4)
    opt = mk("torch.optim.SGD", model.parameters(), lr=0.5)
    first = train_one_epoch(model, [(x, y)], opt, ce, "cpu")
    _check_pair(first, "train_one_epoch")
    for _ in range(30):
        last = train_one_epoch(model, [(x, y)], opt, ce, "cpu")
    checks.check(last[0] < 0.5 * first[0],
                 f"train_one_epoch on one fixed batch, 31 times: expected the loss to fall below half of its first "
                 f"value {first[0]:.3f}, got {last[0]:.3f}; check loss.backward() and optimizer.step()")
    checks.check_close(last[1], 1.0, "the accuracy on that batch after 31 epochs",
                       hint="accuracy = (logits.argmax(dim=1) == y), counted over all samples")
    # Two batches of 8 with learning rate 0: loss and accuracy of all 16 samples.
    local = _local(LINEAR4, 11)
    model = _remote_copy(student, local, LINEAR4)
    loss, acc = train_one_epoch(model, [(x[:8], y[:8]), (x[8:], y[8:])],
                                mk("torch.optim.SGD", model.parameters(), lr=0.0), ce, "cpu")
    with torch.no_grad():
        logits = local(x)
    checks.check_close(loss, F.cross_entropy(logits, y).item(), "mean_loss over two batches (lr=0)", atol=1e-5,
                       hint="average the batch losses over the samples of the epoch; on the CPU run in float32 "
                       "(no autocast)")
    checks.check_close(acc, (logits.argmax(1) == y).float().mean().item(), "accuracy over two batches (lr=0)",
                       atol=1e-6)
    # Stale gradients: the parameters arrive with .grad already set (10 everywhere); each step must use
    # its own batch only. In the sandbox: for p in model.parameters(): (p * 10).sum().backward().
    local = _local(LINEAR4, 12)
    model = _remote_copy(student, local, LINEAR4)
    chain = model.parameters()
    for method, args in [("mul", (10.0,)), ("sum", ()), ("backward", ())]:
        chain = mk("builtins.map", mk("operator.methodcaller", method, *args), chain)
    mk("builtins.list", chain)
    _check_close(_attr(student, model, "1.bias.grad"), torch.full((4,), 10.0), "the stale gradient set before "
                 "the call (a grader self-check)")
    train_one_epoch(model, [(x, y), (x, y)], mk("torch.optim.SGD", model.parameters(), lr=0.1), ce, "cpu")
    ref_opt = torch.optim.SGD(local.parameters(), lr=0.1)
    for _ in range(2):
        ref_opt.zero_grad()
        F.cross_entropy(local(x), y).backward()
        ref_opt.step()
    _check_close(model.state_dict()["1.weight"], local[1].weight, "the weights after two SGD steps (lr=0.1) on "
                 "two batches", atol=1e-6, hint="call optimizer.zero_grad() before every backward pass: "
                 "backward() adds to .grad")


@block("train_one_epoch-tests", deny=["helpers.train._train_epoch", "helpers.train.fit"])
def test_train_one_epoch_weighted(student):
    _, _, batches = _batches13(1)
    # Batches of 8 and 5 with a real learning rate: sums weighted by batch size, taken before each step.
    local, model, got = _epoch(student, 13, batches, _cross_entropy(student), CPU)
    _check_pair(got, "train_one_epoch")
    want = _reference_epoch(local, batches, 0.3)
    checks.check_close(got[0], want[0], "mean_loss over batches of 8 and 5 samples (lr=0.3)", atol=1e-5,
                       hint="weight each batch's loss by its size: sum(loss * B) / N, not the mean of the batch losses")
    checks.check_close(got[1], want[1], "accuracy over batches of 8 and 5 samples (lr=0.3)", atol=1e-6,
                       hint="count correct samples over the epoch, from the logits computed before each step")
    _check_state(model, local, "that epoch", hint="on the CPU, no autocast: the forward pass runs in float32")
    # The loss function is the caller's (here with label smoothing).
    local, model, got = _epoch(student, 14, batches, _cross_entropy(student, 0.2), "cpu")
    want = _reference_epoch(local, batches, 0.3, _ce(0.2))
    checks.check_close(got[0], want[0], "mean_loss with the given loss_fn", atol=1e-5,
                       hint="use loss_fn, not a loss of your own")
    _check_state(model, local, "an epoch with a label-smoothing loss_fn", hint="use loss_fn, not a loss of your own")


@block("train_one_epoch-tests", deny=["helpers.train._train_epoch", "helpers.train.fit"])
def test_train_one_epoch_train_mode(student):
    # A model handed over in eval mode must train in training mode (BatchNorm uses and updates batch statistics).
    _, _, batches = _batches13(1)
    spec = [("Conv2d", 3, 4, 3), ("BatchNorm2d", 4), ("Flatten",), ("Linear", 16, 5)]
    local = _local(spec, 15)
    model = _remote_copy(student, local, spec).eval()
    student.train_one_epoch(model, batches, student.make("torch.optim.SGD", model.parameters(), lr=0.1),
                            _cross_entropy(student), "cpu")
    training = model.training
    checks.check(training is True and not torch.equal(model.state_dict()["1.running_mean"], local[1].running_mean),
                 "train_one_epoch on a model in eval mode: expected training mode (BatchNorm statistics updated), "
                 f"got model.training == {training}; call model.train() first")
    _reference_epoch(local, batches, 0.1)
    _check_state(model, local, "an epoch of a model with BatchNorm", atol=1e-5)


@block("train_one_epoch-tests", deny=["helpers.train._train_epoch", "helpers.train.fit"])
def test_train_one_epoch_scaler(student):
    """The GradScaler branch, on the CPU: scale(loss).backward(), scaler.step(optimizer), scaler.update()."""
    _, _, batches = _batches13(1)
    # growth_interval=1: every update() after a step without inf/NaN gradients doubles the scale
    scaler = student.make("torch.amp.GradScaler", "cpu", init_scale=16.0, growth_interval=1)
    local, model, got = _epoch(student, 16, batches, _cross_entropy(student), "cpu", scaler=scaler)
    _check_pair(got, "train_one_epoch with a scaler")
    want = _reference_epoch(local, batches, 0.3)
    scale = scaler.get_scale()
    checks.check_equal(scale, 64.0, "the GradScaler's scale after an epoch of two batches (from 16, doubled by each "
                       "update)", hint="with a scaler: scaler.scale(loss).backward(); scaler.step(optimizer); "
                       "scaler.update(), once per batch")
    _check_state(model, local, "an epoch with a GradScaler", hint="scaler.step(optimizer) unscales the gradients "
                 "before the step: call it instead of optimizer.step(), after scaler.scale(loss).backward()")
    checks.check_close(got[0], want[0], "mean_loss of an epoch with a GradScaler", atol=1e-5,
                       hint="sum the unscaled loss (loss, not scaler.scale(loss)) times the batch size")
    # A disabled scaler (enabled=False) passes everything through: plain SGD steps.
    local, model, got = _epoch(student, 17, batches, _cross_entropy(student), torch.device("cpu"),
                               scaler=student.make("torch.amp.GradScaler", "cpu", enabled=False))
    want = _reference_epoch(local, batches, 0.3)
    checks.check_close(got[0], want[0], "mean_loss of an epoch with a disabled GradScaler", atol=1e-5)
    _check_state(model, local, "an epoch with a disabled GradScaler")


# ----------------------------------------------------------------------------- 2. evaluate

EVAL_SPEC = [("Conv2d", 3, 4, 3), ("BatchNorm2d", 4), ("ReLU",), ("Dropout", 0.5), ("Flatten",), ("Linear", 16, 5)]


def _eval_model(student):
    """The visible check's model (BatchNorm with running statistics unlike any batch's, Dropout), local and remote."""
    local = _local(EVAL_SPEC, 20)
    with torch.no_grad():
        local[1].running_mean.uniform_(-0.5, 0.5)
        local[1].running_var.uniform_(0.5, 2.0)
    return local, _remote_copy(student, local, EVAL_SPEC)


EVALUATE_DENY = ["helpers.train.evaluate_loader", "helpers.evaluate.predict", "helpers.inference.predict_logits"]


@block("evaluate-tests", deny=EVALUATE_DENY)
def test_evaluate_visible(student):
    xs, ys, batches = _batches13(2)
    local, model = _eval_model(student)
    model.train()  # evaluate must switch to eval mode itself
    got = student.evaluate(model, batches, _cross_entropy(student), "cpu")
    _check_pair(got, "evaluate")
    state = model.state_dict()
    for key, value in local.state_dict().items():
        _check_close(state[key], value, f"model.state_dict()[{key!r}] after evaluate", atol=0,
                     hint="evaluate must change no weight and no BatchNorm statistic: model.eval(), no optimizer")
    with torch.no_grad():
        logits = local.eval()(xs)
    checks.check_close(got[0], F.cross_entropy(logits, ys).item(), "mean_loss over batches of 8 and 5", atol=1e-5,
                       hint="in eval mode (no dropout, BatchNorm running statistics), weighted by batch size")
    checks.check_close(got[1], (logits.argmax(1) == ys).float().mean().item(), "accuracy over batches of 8 and 5",
                       atol=1e-6)
    # The caller's loss function, a single sample, and a third batch size.
    got = student.evaluate(model, batches, _cross_entropy(student, 0.2), "cpu")
    checks.check_close(got[0], F.cross_entropy(logits, ys, label_smoothing=0.2).item(),
                       "mean_loss with a label-smoothing loss_fn", atol=1e-5, hint="use the given loss_fn")
    three = [(xs[:1], ys[:1]), (xs[1:10], ys[1:10]), (xs[10:], ys[10:])]
    got = student.evaluate(model, three, _cross_entropy(student), "cpu")
    checks.check_close(got[0], F.cross_entropy(logits, ys).item(), "mean_loss over batches of 1, 9 and 3", atol=1e-5,
                       hint="weight by batch size")
    checks.check_close(got[1], (logits.argmax(1) == ys).float().mean().item(), "accuracy over batches of 1, 9 and 3",
                       atol=1e-6)


@block("evaluate-tests", deny=EVALUATE_DENY)
def test_evaluate_no_grad(student):
    """One forward pass per batch, in eval mode, with autograd off, and no gradients left behind."""
    xs, ys, batches = _batches13(2)
    spec = [("Flatten",), ("Dropout", 0.5), ("Linear", 48, 5)]
    local = _local(spec, 21)
    model = _remote_copy(student, local, spec).train()
    # a forward hook that prints (module, inputs, output) into a buffer in the sandbox: the output's
    # repr shows a grad_fn exactly when autograd recorded the forward pass
    mk = student.make
    buffer = mk("io.StringIO")
    printer = _attr(student, mk("importlib.import_module", "builtins"), "print")
    model.register_forward_hook(mk("functools.partial", printer, end="<end of forward>\n", file=buffer))
    got = student.evaluate(model, batches, _cross_entropy(student), torch.device("cpu"))
    text = buffer.getvalue()
    forwards = text.count("<end of forward>")
    checks.check(forwards == 2, f"evaluate: expected one forward pass per batch (2), got {forwards}")
    checks.check("grad_fn" not in text, "evaluate: expected no gradient tracking, got outputs with a grad_fn "
                 "(torch.is_grad_enabled() was True); use torch.no_grad()")
    checks.check(_attr(student, model, "2.weight.grad") is None, "evaluate: expected no gradients in the parameters, "
                 "got some; do not call backward() when evaluating")
    with torch.no_grad():
        logits = local.eval()(xs)
    checks.check_close(got[0], F.cross_entropy(logits, ys).item(), "mean_loss of a model with Dropout(0.5)",
                       atol=1e-5, hint="evaluate: run the forward passes in eval mode (dropout off); call model.eval()")


# ----------------------------------------------------------------------------- 3. label_smoothing_cross_entropy

@block("label_smoothing_cross_entropy-tests",
       deny=["torch.nn.functional.cross_entropy", "torch.nn.functional.nll_loss"])
def test_label_smoothing_cross_entropy(student):
    fn = student.label_smoothing_cross_entropy
    torch.manual_seed(3)
    logits, t = torch.randn(6, 4), torch.tensor([0, 3, 1, 1, 2, 0])
    got = fn(logits, t, 0.0)
    checks.check(torch.is_tensor(got) and got.ndim == 0,
                 f"label_smoothing_cross_entropy: expected a 0-dim tensor, got {type(got).__name__} "
                 f"{tuple(getattr(got, 'shape', ()))}; take the mean over the samples")
    checks.check_close(got, F.cross_entropy(logits, t), "label_smoothing_cross_entropy(logits, targets, 0.0)",
                       atol=1e-5, hint="without smoothing it is the mean of -log_softmax(logits)[i, targets[i]]")
    checks.check_close(fn(logits, t, 0.1), F.cross_entropy(logits, t, label_smoothing=0.1),
                       "label_smoothing_cross_entropy(logits, targets, 0.1)", atol=1e-5,
                       hint="the target puts 1 - s + s/C on the true class and s/C on each other class")
    for n, c, s in [(1, 2, 0.3), (50, 10, 0.05), (17, 100, 0.2), (8, 3, 0.5), (9, 7, 1.0)]:
        z = torch.randn(n, c) * 3
        tt = torch.randint(0, c, (n,))
        checks.check_close(fn(z, tt, s), F.cross_entropy(z, tt, label_smoothing=s),
                           f"label_smoothing_cross_entropy on {n} samples, {c} classes, smoothing {s}", atol=1e-5,
                           hint="spread smoothing / C over ALL classes, the true one included")
    big, tb = torch.tensor([[1e4, -1e4, 0.0], [0.0, 5e3, -5e3]]), torch.tensor([1, 1])
    checks.check_close(fn(big, tb, 0.1), F.cross_entropy(big, tb, label_smoothing=0.1),
                       "label_smoothing_cross_entropy on logits of size 1e4", atol=1e-2, rtol=1e-5,
                       hint="use F.log_softmax, not torch.log(torch.softmax(...)), which gives log(0) = -inf")
    z = torch.randn(5, 6)
    tt = torch.tensor([0, 5, 2, 2, 1])
    # the gradient with respect to the logits, computed in the sandbox by torch.func.grad
    try:
        g_got = student.make("torch.func.grad", fn)(z, tt, 0.15)
    except AssertionError as exc:
        raise AssertionError(f"the gradient of label_smoothing_cross_entropy with respect to the logits could not "
                             f"be computed ({exc}); build the loss from torch operations on logits (no .item(), "
                             ".numpy() or .detach())") from None
    zg = z.clone().requires_grad_(True)
    (g_want,) = torch.autograd.grad(F.cross_entropy(zg, tt, label_smoothing=0.15), zg)
    _check_close(g_got, g_want, "the gradient of the loss with respect to the logits", atol=1e-6,
                 hint="build the loss from torch operations on logits (no .item(), .numpy() or .detach())")


# ----------------------------------------------------------------------------- 4. EarlyStopping

def _steps(student, values, *args, **kwargs):
    es = student.EarlyStopping(*args, **kwargs)
    return es, [es.step(v) for v in values]


@block("EarlyStopping-tests", deny=["helpers.train_state.EarlyStopping"])
def test_early_stopping(student):
    es = student.EarlyStopping(patience=2)
    checks.check(es.best is None, f"EarlyStopping(2).best before any step: expected None, got {es.best!r}")
    vals = [0.50, 0.60, 0.60, 0.55, 0.70, 0.69, 0.68]
    got = [es.step(v) for v in vals]
    checks.check_equal(got, [False, False, False, True, False, False, True],
                       f"EarlyStopping(patience=2).step(v) for v in {vals}",
                       hint="count the steps in a row without improvement (an equal value is no improvement); "
                            "return True once the count reaches patience; an improvement resets it")
    checks.check_close(es.best, 0.70, "EarlyStopping.best after those steps",
                       hint="the highest value seen in mode 'max'")
    vals = [1.0, 0.995, 0.97, 0.965, 0.962, 0.95, 0.955, 0.958, 0.957]
    es, got = _steps(student, vals, patience=3, min_delta=0.01, mode="min")
    checks.check_equal(got, [False, False, False, False, False, False, False, False, True],
                       f"EarlyStopping(3, min_delta=0.01, mode='min').step(v) for v in {vals}",
                       hint="in mode 'min' an improvement is value < best - min_delta, measured from the best so far")
    checks.check_close(es.best, 0.95, "EarlyStopping(mode='min').best after those steps",
                       hint="best changes only on an improvement, e.g. 0.995 does not beat 1.0 by more than 0.01")
    es, got = _steps(student, [0.30, 0.34, 0.33], patience=2, min_delta=0.05)
    checks.check_equal(got, [False, False, True],
                       "EarlyStopping(2, min_delta=0.05).step(v) for v in [0.30, 0.34, 0.33]",
                       hint="0.34 is not more than 0.05 above 0.30, so it is no improvement")
    checks.check_close(es.best, 0.30, "EarlyStopping(2, min_delta=0.05).best after [0.30, 0.34, 0.33]",
                       hint="a value better by less than min_delta does not become the best")
    _, got = _steps(student, [0.1, 0.2, 0.2, 0.3, 0.25, 0.25], patience=1)
    checks.check_equal(got, [False, False, True, False, True, True], "EarlyStopping(patience=1) over 6 steps",
                       hint="with patience 1, the first step without improvement stops; later ones keep saying stop")
    _, got = _steps(student, [-1.0, -2.0, -1.5, -3.0], patience=2, mode="min")
    checks.check_equal(got, [False, False, False, False], "EarlyStopping(2, mode='min') on negative values",
                       hint="the first value counts as an improvement")
    for bad in ("maximum", "avg", None):
        try:
            with student.raises("ValueError"):
                student.EarlyStopping(2, mode=bad)
        except AssertionError as exc:
            raise AssertionError(f"EarlyStopping(2, mode={bad!r}): expected a ValueError, got "
                                 f"{'none' if 'got none' in str(exc) else exc}") from None


@block("EarlyStopping-tests", deny=["helpers.train_state.EarlyStopping"])
def test_early_stopping_boundary(student):
    """An improvement of exactly min_delta is not one: the spec says MORE than min_delta (exact binary values)."""
    for mode, values in [("max", [0.5, 0.75]), ("min", [0.75, 0.5])]:
        es, got = _steps(student, values, patience=1, min_delta=0.25, mode=mode)
        checks.check_equal(got, [False, True], f"EarlyStopping(1, min_delta=0.25, mode={mode!r}).step(v) for v in "
                           f"{values}", hint="an improvement must beat the best by MORE than min_delta: "
                           + ("value > best + min_delta" if mode == "max" else "value < best - min_delta"))
        checks.check_close(es.best, values[0], f"EarlyStopping(1, min_delta=0.25, mode={mode!r}).best after {values}",
                           hint="a value better by exactly min_delta does not become the best")
    es, got = _steps(student, [0.5, 0.75 + 2 ** -20], patience=1, min_delta=0.25)
    checks.check_equal(got, [False, False], "EarlyStopping(1, min_delta=0.25).step(v) for v in [0.5, 0.75 + 2**-20]",
                       hint="a value more than min_delta above the best is an improvement")


# ----------------------------------------------------------------------------- 5. warmup_cosine_lr

# multiplier("cosine", step, total, warmup) is the same schedule by name (it also takes the spec's 4 positional
# arguments, so a wrapper that passes them through reaches the denial rather than a TypeError)
@block("warmup_cosine_lr-tests", deny=["helpers.schedules.multiplier", "helpers.schedules.cosine",
                                       "helpers.schedules.onecycle"])
def test_warmup_cosine_lr(student):
    fn = student.warmup_cosine_lr
    for step, want in [(0, 0.0), (5, 0.05), (10, 0.1), (55, 0.05), (100, 0.0), (150, 0.0)]:
        got = fn(step, 100, 10, 0.1)
        checks.check(isinstance(got, float), f"warmup_cosine_lr: expected a Python float, got {type(got).__name__}")
        checks.check_close(got, want, f"warmup_cosine_lr({step}, 100, 10, 0.1)", atol=1e-9,
                           hint="warmup: base_lr * step / warmup_steps; then the half cosine over the remaining steps")
    for total, warm, lr in [(1000, 100, 0.4), (37, 0, 1.0), (12, 11, 3e-3), (500, 1, 0.05)]:
        for step in range(0, total + 3, max(1, total // 97)):
            checks.check_close(fn(step, total, warm, lr), lr * reference_cosine(step, total, warm),
                               f"warmup_cosine_lr({step}, {total}, {warm}, {lr})", atol=1e-9, rtol=1e-9,
                               hint="without warmup (warmup_steps=0) step 0 already gives base_lr")
    for step, want in [(0, 0.0), (10, 0.1), (30, 0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * 0.25))), (90, 0.01),
                       (200, 0.01)]:
        checks.check_close(fn(step, 90, 10, 0.1, min_lr=0.01), want,
                           f"warmup_cosine_lr({step}, 90, 10, 0.1, min_lr=0.01)", atol=1e-9,
                           hint="the cosine runs from base_lr down to min_lr: min_lr + (base_lr - min_lr) * ...")
