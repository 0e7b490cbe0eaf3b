"""Face datasets, aligned-crop caching, and train / test / forget splits.

Typical use::

    dataset = load_orl()
    aligned = align_dataset(dataset)
    split = with_forget_identities(make_split(aligned.usable_dataset(dataset), seed=0), ["s7"])
    crops, labels = aligned_for(aligned, split, split.retain_train_keys)
"""

from __future__ import annotations

from dlfd_core.data.aligned import AlignedFaces, align_dataset, aligner_fingerprint, cache_path
from dlfd_core.data.dataset import FaceDataset, FaceRecord, find_duplicates, natural_key, natural_sorted
from dlfd_core.data.folder import IMAGE_EXTENSIONS, load_folder, load_hub_dataset
from dlfd_core.data.lfw import LFW_CREDIT, load_lfw
from dlfd_core.data.orl import ORL_CREDIT, load_orl, orl_root
from dlfd_core.data.packed import PackedFaces, read_packed, write_packed
from dlfd_core.data.splits import (
    FORGET_MODES,
    UNSEEN_LABEL,
    Split,
    aligned_for,
    load_split,
    make_split,
    save_split,
    split_from_dict,
    split_to_dict,
    validate_split,
    with_forget_identities,
    with_forget_instances,
)
from dlfd_core.data.transforms import crops_to_tensor

__all__ = [
    "FORGET_MODES",
    "IMAGE_EXTENSIONS",
    "LFW_CREDIT",
    "ORL_CREDIT",
    "UNSEEN_LABEL",
    "AlignedFaces",
    "FaceDataset",
    "FaceRecord",
    "PackedFaces",
    "Split",
    "align_dataset",
    "aligned_for",
    "aligner_fingerprint",
    "cache_path",
    "crops_to_tensor",
    "find_duplicates",
    "load_folder",
    "load_hub_dataset",
    "load_lfw",
    "load_orl",
    "load_split",
    "make_split",
    "natural_key",
    "natural_sorted",
    "orl_root",
    "read_packed",
    "save_split",
    "split_from_dict",
    "split_to_dict",
    "validate_split",
    "with_forget_identities",
    "with_forget_instances",
    "write_packed",
]
