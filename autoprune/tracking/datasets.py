"""A study's data splits as MLflow dataset inputs: what the UI's Datasets column shows.

Each split (train, val, test) is one dataset named `<data>-<split>` with MLflow's usual context
tag (training, validation, test), its number of items as the profile, and a digest of the
split's fingerprint (the config and the sizes that identify it: items are never read for it,
so an ImageNet-size dataset costs nothing here). The source says where the data came from: the
file or folder `data.path` names, else the code that built it (`_target_`, or autoprune's own
loader for the embedded sets).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from autoprune.config import DataConfig
from autoprune.data.splits import DataSplits

CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
CONTEXT_TAG = "mlflow.data.context"  # the tag MLflow's own log_input writes


def _source(data: DataConfig) -> tuple[str, str]:
    """(source_type, source JSON) as MLflow's dataset sources write them."""
    if data.path:
        return "local", json.dumps({"uri": str(Path(data.path).expanduser().resolve())})
    built_by = (data.train or {}).get("_target_") if data.name == "dataset" else None
    return "code", json.dumps({"tags": {"autoprune.data": data.name,
                                        **({"_target_": built_by} if built_by else {})}})


def split_inputs(data: DataConfig, splits: DataSplits) -> list[Any]:
    """The three splits as `mlflow.entities.DatasetInput`s, ready for `log_inputs`."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source_type, source = _source(data)
    inputs = []
    for split, size in zip(CONTEXTS, splits.sizes(), strict=True):
        digest = hashlib.sha256(f"{splits.fingerprint}/{split}/{size}".encode()).hexdigest()
        dataset = Dataset(name=f"{data.name}-{split}", digest=digest[:8],
                          source_type=source_type, source=source,
                          profile=json.dumps({"num_rows": size}))
        inputs.append(DatasetInput(dataset, tags=[InputTag(CONTEXT_TAG, CONTEXTS[split])]))
    return inputs
