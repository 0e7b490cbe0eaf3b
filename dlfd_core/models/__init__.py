"""Face-embedding backbones (created by name) and the face classifier built on them.

Importing this package registers the built-in backbones: ``"dlib_resnet"`` (128-d, pretrained, the default),
``"inception_resnet_v1"`` (facenet, 512-d; pretrained weights are a separate download) and ``"resnet18"``
(512-d, trained from scratch).
"""

from __future__ import annotations

from . import dlib_resnet, inception_resnet_v1, resnet18
from .classifier import (
    FaceClassifier,
    ModelConfigError,
    build_from_config,
    create_model,
    load_model,
    model_config,
    read_model_metadata,
    save_model,
)
from .registry import backbone_names, create_backbone, register_backbone

__all__ = [
    "FaceClassifier",
    "ModelConfigError",
    "backbone_names",
    "build_from_config",
    "create_backbone",
    "create_model",
    "dlib_resnet",
    "inception_resnet_v1",
    "load_model",
    "model_config",
    "read_model_metadata",
    "register_backbone",
    "resnet18",
    "save_model",
]
