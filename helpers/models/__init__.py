"""The course's model zoo. Every model is registered by name, so checkpoints can rebuild it:

    model = build_model("resnet18", num_classes=10)
    spec = model_spec(model)                      # {"name": "resnet18", "kwargs": {...}}
    same = build_model(spec["name"], **spec["kwargs"])

Names: mlp, fiveconv, fiveconv_bn, simple_cnn, resnet18, se_resnet, fastnet,
transfer_resnet18, and layers (a network described as a JSON-able list, for students' designs).
"""
from .registry import build_model, model_names, model_spec, register_model
from .mlp import MLP
from .convnets import FiveConvNet, FiveConvNetBN, SimpleCNN
from .resnet import BasicBlock, DropPath, ResNet, ResNet18, SEBlock, SEResNet
from .fastnet import ConvBlock, FastNet, init_whitening
from .transfer import TransferResNet18
from .layers import LayerStack
from .utils import count_parameters

__all__ = [
    "build_model", "register_model", "model_names", "model_spec", "count_parameters",
    "MLP", "FiveConvNet", "FiveConvNetBN", "SimpleCNN",
    "BasicBlock", "DropPath", "SEBlock", "ResNet", "ResNet18", "SEResNet",
    "ConvBlock", "FastNet", "init_whitening", "TransferResNet18", "LayerStack",
]
