"""Cluster quality against phone alignments (HuBERT, Hsu et al. 2021, section IV-E).

With the joint distribution P(p, c) of phone p and cluster c over frames:

- phone purity   = sum_c max_p P(p, c)   (average phone accuracy when each cluster is its main phone)
- cluster purity = sum_p max_c P(p, c)   (average cluster accuracy when each phone is its main cluster)
- PNMI           = I(p; c) / H(p)        (share of the phone uncertainty the clusters remove)
"""

from typing import Dict, Sequence

import numpy as np


def joint_counts(phones: Sequence[str], clusters: Sequence[int]) -> np.ndarray:
    """Counts ``(num_phones, num_clusters)`` of co-occurring frame labels (equal lengths)."""
    if len(phones) != len(clusters):
        raise ValueError(f"{len(phones)} phone frames but {len(clusters)} cluster frames")
    _, phone_ids = np.unique(np.asarray(phones), return_inverse=True)
    _, cluster_ids = np.unique(np.asarray(clusters), return_inverse=True)
    counts = np.zeros((phone_ids.max() + 1, cluster_ids.max() + 1), dtype=np.int64)
    np.add.at(counts, (phone_ids, cluster_ids), 1)
    return counts


def cluster_quality(counts: np.ndarray) -> Dict[str, float]:
    """Phone purity, cluster purity and PNMI of a ``(phones, clusters)`` count matrix."""
    joint = counts / counts.sum()
    p_phone = joint.sum(axis=1, keepdims=True)
    p_cluster = joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    mutual_information = float(
        (joint[nonzero] * np.log(joint[nonzero] / (p_phone @ p_cluster)[nonzero])).sum()
    )
    phone_entropy = float(-(p_phone[p_phone > 0] * np.log(p_phone[p_phone > 0])).sum())
    return {
        "phone_purity": float(joint.max(axis=0).sum()),
        "cluster_purity": float(joint.max(axis=1).sum()),
        "pnmi": mutual_information / phone_entropy if phone_entropy > 0 else 0.0,
    }
