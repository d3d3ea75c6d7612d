"""Anisotropic L2 similarity, top-k softmax and memory readout (paper §3.2, REFERENCE.md §3).

Layout: memory keys are Ck×N (N memory elements), queries Ck×M (M query positions). Similarities are
returned query-major, M×N, so that top-k and softmax run over a contiguous last dimension.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def fold_memory(mem_key: torch.Tensor, mem_shrinkage: torch.Tensor | None) -> torch.Tensor:
    """Memory side of the folded similarity: [2k·s'; -k²·s'; -s'] with s' = s/√C, (2Ck+1)×N.

    With :func:`fold_query`, S = fold_query(q, e)ᵀ · fold_memory(k, s) is the anisotropic L2 similarity
    S[j, i] = -s_i · Σ_c e_cj (k_ci - q_cj)² / √C in a single matrix product (the query's own term does
    not cancel: each memory element has its own shrinkage).
    Leading batch dimensions are allowed (``mem_key`` …×Ck×N, ``mem_shrinkage`` …×N).
    """
    scale = 1 / math.sqrt(mem_key.shape[-2])
    scale = mem_shrinkage * scale if mem_shrinkage is not None else torch.full_like(mem_key[..., 0, :], scale)
    scale = scale.unsqueeze(-2)  # …×1×N
    return torch.cat([2 * mem_key * scale, -mem_key.pow(2) * scale, -scale], dim=-2)


def fold_query(query_key: torch.Tensor, query_selection: torch.Tensor) -> torch.Tensor:
    """Query side of the folded similarity: [q·e; e; Σ_c e q²], (2Ck+1)×M (leading batch dims allowed)."""
    q, e = query_key, query_selection
    return torch.cat([q * e, e, (e * q.pow(2)).sum(-2, keepdim=True)], dim=-2)


def similarity(
    mem_key: torch.Tensor,
    mem_shrinkage: torch.Tensor | None,
    query_key: torch.Tensor,
    query_selection: torch.Tensor | None,
) -> torch.Tensor:
    """S[j, i] = -s_i · Σ_c e_cj (k_ci - q_cj)² / √C, as an M×N tensor.

    ``mem_key`` Ck×N, ``mem_shrinkage`` N (or None: 1), ``query_key`` / ``query_selection`` Ck×M, all with
    the same optional leading batch dimensions (then the result is …×M×N).
    Without a selection the query's own squared norm is dropped (it is the same for every memory
    element, as in STCN).
    """
    if query_selection is not None:
        return fold_query(query_key, query_selection).transpose(-1, -2) @ fold_memory(mem_key, mem_shrinkage)
    sim = 2 * (query_key.transpose(-1, -2) @ mem_key) - mem_key.pow(2).sum(-2, keepdim=True)
    if mem_shrinkage is not None:
        return sim * (mem_shrinkage / math.sqrt(mem_key.shape[-2])).unsqueeze(-2)
    return sim / math.sqrt(mem_key.shape[-2])


def topk_softmax(sim: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the ``top_k`` largest similarities of each row, softmax over them (with max subtraction).

    Returns ``(weights, indices)``, both M×k; every other affinity is zero. ``top_k`` larger than the
    memory keeps all of it.
    """
    values, indices = row_topk(sim, min(top_k, sim.shape[1]))
    return torch.softmax(values, dim=1), indices


PREFILTER_PARTS = 8  # column groups of the top-k prefilter
PREFILTER_MIN_COLUMNS = 1024  # below this, one torch.topk is as fast


def row_topk(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest values of each row of the M×N ``sim`` and their column indices (unsorted).

    The values are exactly those of ``torch.topk``; on wide CPU matrices they are found by a prefilter
    that scans each element once with vectorised instructions instead of once through a heap. The columns
    are split into P interleaved groups of W = N // P (column j in block j mod W); a row's k blocks with
    the largest maxima hold all of its k largest values (a value outside them would be exceeded by k block
    maxima, so it would not be among the k largest), and the final top-k runs over those k·P candidates
    only. The k best blocks are themselves the top-k of the M×W block maxima, found the same way while W
    is wide (two levels at tens of thousands of columns). The rare equal values may be picked at other
    columns than ``torch.topk`` picks them.
    """
    m, n = sim.shape
    parts = PREFILTER_PARTS
    width = n // parts
    if sim.device.type != "cpu" or n < PREFILTER_MIN_COLUMNS or width < k:
        return torch.topk(sim, k=k, dim=1, sorted=False)
    block_max = sim[:, : width * parts].unflatten(1, (parts, width)).amax(dim=1)  # M×W
    blocks = row_topk(block_max, k)[1]  # M×k
    offsets = torch.arange(0, width * parts, width, device=sim.device).view(1, parts, 1)
    columns = (blocks.unsqueeze(1) + offsets).flatten(1)  # M×(P·k)
    if width * parts < n:  # the last n mod P columns are candidates of every row
        tail = torch.arange(width * parts, n, device=sim.device).expand(m, -1)
        columns = torch.cat([columns, tail], dim=1)
    values, picked = torch.topk(torch.gather(sim, 1, columns), k=k, dim=1, sorted=False)
    return values, torch.gather(columns, 1, picked)


def usage_of(weights: torch.Tensor, indices: torch.Tensor, size: int) -> torch.Tensor:
    """Per memory element, the sum of its affinity over all query positions (N)."""
    usage = torch.zeros(size, dtype=weights.dtype, device=weights.device)
    return usage.index_add_(0, indices.flatten(), weights.flatten())


def sparse_readout(weights: torch.Tensor, indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Readout F = v·W with W the sparse top-k affinity: M×D from ``values`` N×D (D = objects × Cv).

    Only the k non-zero affinities of each query are multiplied, so the cost does not grow with N. It is
    one weighted gather-and-sum per query (``embedding_bag``, a single kernel on the CPU and on CUDA, faster
    than a sparse CSR product on both and free of its per-call set-up).
    """
    if weights.device.type == "mps":  # no embedding_bag weights there: the dense product, same numbers
        dense = torch.zeros(weights.shape[0], values.shape[0], dtype=weights.dtype, device=weights.device)
        return dense.scatter_(1, indices, weights) @ values
    return F.embedding_bag(indices, values, per_sample_weights=weights.to(values.dtype), mode="sum")


def full_softmax(sim: torch.Tensor) -> torch.Tensor:
    """Softmax over the memory dimension (no top-k), as used by memory potentiation: M×N."""
    return torch.softmax(sim, dim=1)
