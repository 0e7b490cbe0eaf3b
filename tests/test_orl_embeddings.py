"""Integration: the pretrained default backbone on the project's own aligned ORL crops identifies people."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def orl_embeddings(orl_aligned):
    from dlfd_core.data import crops_to_tensor
    from dlfd_core.models import create_backbone

    backbone = create_backbone("dlib_resnet", pretrained=True).eval()
    chunks = []
    with torch.inference_mode():
        for first in range(0, len(orl_aligned.keys), 100):
            x = crops_to_tensor(orl_aligned.crops[first : first + 100], backbone.input_size)
            chunks.append(backbone(x).numpy())
    return np.concatenate(chunks), np.asarray(orl_aligned.identities)


def test_every_orl_face_is_aligned(orl_aligned):
    assert len(orl_aligned.keys) == 400
    assert not orl_aligned.failures
    assert len(set(orl_aligned.identities)) == 40


def test_pretrained_embeddings_identify_orl_people(orl_embeddings):
    from dlfd_core.evaluate.metrics import loo_nn_identification, verification_auc

    features, identities = orl_embeddings
    assert loo_nn_identification(features, identities) >= 0.97
    assert verification_auc(features, identities) >= 0.99
