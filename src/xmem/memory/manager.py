"""The three memory stores of one video and their updates (paper §3.3-3.5, REFERENCE.md §3-4).

- sensory memory: a hidden state per object (B×N×Ch×H×W), updated by the decoder or the value encoder;
- working memory: the keys / values of recent memory frames plus the first one;
- long-term memory: prototypes consolidated from the working memory, bounded by LFU eviction.

Objects are held in *groups* (objects that joined the memory on the same frame), in the order of the
engine's object list. Nothing here grows with the number of frames once long-term memory is full.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import torch

from xmem.config import MemoryConfig
from xmem.memory.similarity import (
    fold_memory,
    fold_query,
    full_softmax,
    similarity,
    sparse_readout,
    topk_softmax,
    usage_of,
)
from xmem.memory.store import MemoryStore, StoreState

SIMILARITY_CHUNK = 1 << 22  # similarities computed at a time on a CPU (16 MiB in fp32)


def _row_chunks(m: int, n: int, device: torch.device) -> list[slice]:
    """Query rows read together. On a CPU the M×N similarities of a 480p frame (tens of millions once the
    working memory fills) are computed and top-k'd in chunks of about :data:`SIMILARITY_CHUNK` elements:
    the top-k scans each chunk while it is still in the caches instead of the whole matrix being written out
    and read back (recorded reads at 480 rows: 23-47% less time with 12-33M similarities; at 10M and
    below the chunks neither gain nor lose). Elsewhere all rows at once. The results are the same either way
    (the rows are independent)."""
    chunks = -(-m * n // SIMILARITY_CHUNK) if device.type == "cpu" else 1
    rows = -(-m // max(chunks, 1))
    return [slice(start, min(m, start + rows)) for start in range(0, m, rows)]


@dataclass
class _Readable:
    """Memory prepared for reading: folded keys of [long-term, working] and per-group column layout."""

    keys: torch.Tensor  # (2Ck+1)×N, see similarity.fold_memory
    long_size: int
    work_size: int


class MemoryManager:
    """Working, long-term and sensory memory of one video.

    ``groups`` lists, per group, the object ids it holds; reading returns per-object features in the order
    ``objects`` (the concatenation of the groups).
    """

    def __init__(self, config: MemoryConfig, hidden_dim: int) -> None:
        self.config = config
        self.hidden_dim = hidden_dim
        self.work = MemoryStore(count_usage=config.long_term)
        self.long = MemoryStore(count_usage=config.long_term)  # usage drives LFU eviction
        self.groups: list[list[int]] = []
        self.hidden: torch.Tensor | None = None  # 1×N×Ch×H×W, in the order of the engine's objects
        self.frame_elements: int | None = None  # H×W of the key at stride 16
        self._readable: _Readable | None = None
        self._scratch: torch.Tensor | None = None  # storage reused for the similarity matrix

    # -- objects -------------------------------------------------------------------------------------------
    @property
    def objects(self) -> list[int]:
        return [o for group in self.groups for o in group]

    @property
    def engaged(self) -> bool:
        return self.work.size > 0

    # -- sensory memory ------------------------------------------------------------------------------------
    def ensure_hidden(self, num_objects: int, like_key: torch.Tensor) -> None:
        """Give objects without a sensory memory a zero one (``like_key``: Ck×H×W at stride 16)."""
        h, w = like_key.shape[-2:]
        have = 0 if self.hidden is None else self.hidden.shape[1]
        if num_objects > have:
            zeros = torch.zeros(  # channels-last, as the decoder's convolutions give it
                1, num_objects - have, h, w, self.hidden_dim, device=like_key.device, dtype=torch.float32
            ).permute(0, 1, 4, 2, 3)
            self.hidden = zeros if self.hidden is None else torch.cat([self.hidden, zeros], dim=1)

    def set_hidden(self, hidden: torch.Tensor) -> None:
        self.hidden = hidden.float()

    # -- reading -------------------------------------------------------------------------------------------
    def _prepare(self) -> _Readable:
        if self._readable is None:
            stores = [s for s in (self.long, self.work) if s.size > 0]
            keys = torch.cat([s.key for s in stores], dim=1)  # type: ignore[misc]
            shrinkage = torch.cat([s.shrinkage for s in stores])  # type: ignore[misc]
            self._readable = _Readable(fold_memory(keys, shrinkage), self.long.size, self.work.size)
        return self._readable

    def _changed(self) -> None:
        self._readable = None

    def read(self, query_key: torch.Tensor, selection: torch.Tensor) -> torch.Tensor:
        """Memory readout for a query frame: ``query_key`` / ``selection`` Ck×H×W -> 1×N×Cv×H×W (stored
        channels-last: Cv varies fastest).

        Working and long-term memory are read together (top-k softmax over both); usage is counted on
        every element (from the first group, which has values for all elements).
        """
        if not self.engaged:
            raise RuntimeError("memory is empty: give a mask before asking for a segmentation")
        mem = self._prepare()
        h, w = query_key.shape[-2:]
        q_terms = fold_query(query_key.flatten(1).float(), selection.flatten(1).float())  # (2Ck+1)×M
        m, n = q_terms.shape[1], mem.keys.shape[1]
        lsize = mem.long_size
        sizes = [(self.long.group_size(g), self.work.group_size(g)) for g in range(len(self.groups))]
        columns = []  # per group: its columns of the similarity matrix (None: all of them)
        for lg, wg in sizes:
            if lg == lsize and wg == mem.work_size:
                columns.append(None)
            else:
                long_cols = torch.arange(lsize - lg, lsize, device=q_terms.device)
                work_cols = torch.arange(n - wg, n, device=q_terms.device)  # n = lsize + mem.work_size
                columns.append(torch.cat([long_cols, work_cols]))
        parts: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in self.groups]
        for rows in _row_chunks(m, n, q_terms.device):
            sim = self._similarity(q_terms[:, rows], mem.keys)  # rows×N
            for g, cols in enumerate(columns):
                parts[g].append(topk_softmax(sim if cols is None else sim[:, cols], self.config.top_k))
        readouts = []
        for g, chunks in enumerate(parts):
            weights, indices = (torch.cat(part) for part in zip(*chunks, strict=True))  # M×k each
            if g == 0:
                usage = usage_of(weights, indices, n)
                if lsize > 0:
                    self.long.update_usage(usage[:lsize])
                self.work.update_usage(usage[lsize:])
            readouts.append(self._readout_group(g, weights, indices, sizes[g][0]))
        out = readouts[0] if len(readouts) == 1 else torch.cat(readouts, dim=1)  # M×N×Cv
        # N×M×Cv (a view for one object): each object's features channels-last, as the decoder's
        # convolutions take them
        out = out.transpose(0, 1).contiguous()
        return out.view(1, out.shape[0], h, w, out.shape[2]).permute(0, 1, 4, 2, 3)

    def _similarity(self, q_terms: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """q_termsᵀ · keys (M×N) written into storage kept from frame to frame.

        At 480 rows a chunk of the matrix holds millions of elements; a fresh tensor of that size is mapped
        from the system and faulted in page by page on every frame, which costs as much as the product
        itself on a CPU. The storage grows with headroom (working memory grows by one frame at a time)."""
        m, n = q_terms.shape[1], keys.shape[1]
        scratch = self._scratch
        if scratch is None or scratch.numel() < m * n or scratch.device != keys.device:
            scratch = self._scratch = torch.empty(m * n * 5 // 4, dtype=keys.dtype, device=keys.device)
        return torch.mm(q_terms.t(), keys, out=scratch[: m * n].view(m, n))

    def _readout_group(self, g: int, weights: torch.Tensor, indices: torch.Tensor, lg: int) -> torch.Tensor:
        # Sparse top-k readout. The group's columns are its lg long-term elements, then its working ones.
        m = weights.shape[0]
        work_v = self.work.values[g]  # Wg×G×Cv
        n_obj, cv = work_v.shape[1], work_v.shape[2]
        if lg == 0:
            out = sparse_readout(weights, indices, work_v.flatten(1))
        else:
            in_long = indices < lg
            zero_w, zero_i = torch.zeros_like(weights), torch.zeros_like(indices)
            out = sparse_readout(
                torch.where(in_long, weights, zero_w),
                torch.where(in_long, indices, zero_i),
                self.long.values[g].flatten(1),
            ) + sparse_readout(
                torch.where(in_long, zero_w, weights),
                torch.where(in_long, zero_i, indices - lg),
                work_v.flatten(1),
            )
        return out.view(m, n_obj, cv)  # M×G×Cv

    # -- writing -------------------------------------------------------------------------------------------
    def add_memory(
        self,
        key: torch.Tensor,
        shrinkage: torch.Tensor,
        selection: torch.Tensor | None,
        value: torch.Tensor,
        objects: list[int],
    ) -> None:
        """Append a memory frame. ``key``/``selection`` Ck×H×W, ``shrinkage`` 1×H×W, ``value`` N×Cv×H×W
        for ``objects`` (ids, in the engine's order: the known groups' objects, then new ones)."""
        hw = key.shape[-2] * key.shape[-1]
        if self.frame_elements is None:
            self.frame_elements = hw
        elif self.frame_elements != hw:
            raise ValueError(f"frame size changed within a video ({self.frame_elements} vs {hw} elements)")
        known = self.objects
        if objects[: len(known)] != known:
            raise ValueError(f"object order {objects} does not extend the memory's objects {known}")
        flat_value = value.flatten(2).permute(2, 0, 1).float()  # HW×N×Cv
        values: list[torch.Tensor | None] = []
        start = 0
        for group in self.groups:
            values.append(flat_value[:, start : start + len(group)].contiguous())
            start += len(group)
        if start < len(objects):
            values.append(flat_value[:, start:].contiguous())
            self.groups.append(list(objects[start:]))
        keep_selection = (
            selection.flatten(1).float() if (selection is not None and self.config.long_term) else None
        )
        self.work.add(key.flatten(1).float(), shrinkage.flatten().float(), keep_selection, values)
        self._changed()
        if self.config.long_term and self.work.size >= self.config.max_working_frames * hw:
            self._evict_if_needed()
            self._consolidate()

    def _evict_if_needed(self) -> None:
        """LFU: make room for ``num_prototypes`` new long-term elements."""
        limit = self.config.max_long_term_elements - self.config.num_prototypes
        excess = self.long.size - limit
        if excess <= 0:  # (the reference crashes on excess == 0)
            return
        usage = self.long.normalized_usage()
        threshold = torch.topk(usage, excess, largest=False, sorted=False).values.max()  # excess-th smallest
        self.long.keep(usage > threshold)

    def _consolidate(self) -> None:
        """Turn the working-memory candidates into long-term prototypes (selection + potentiation)."""
        hw = self.frame_elements
        assert hw is not None
        work = self.work
        n = work.size
        start, end = hw, n - (self.config.min_working_frames - 1) * hw  # the first frame and the newest stay
        if end <= start:
            return
        assert work.key is not None and work.shrinkage is not None
        cand_key = work.key[:, start:end]
        cand_shrinkage = work.shrinkage[start:end]
        usage = work.normalized_usage()[start:end]
        num_proto = min(self.config.num_prototypes, end - start)
        # the most used candidates, in memory order (so a late group's prototypes are a suffix)
        proto = torch.topk(usage, k=num_proto, sorted=True).indices.sort().values
        proto_key = cand_key[:, proto]
        proto_selection = work.selection[:, start:end][:, proto] if work.selection is not None else None

        # potentiation: every prototype averages the candidates' values with softmax(similarity) weights
        sim = similarity(cand_key, cand_shrinkage, proto_key, proto_selection)  # P×Nc
        proto_values: list[torch.Tensor | None] = []
        proto_shrinkage = None
        for g in range(work.num_groups):
            first = max(work.group_offset(g) - start, 0)  # first candidate this group has values for
            if first >= end - start:
                proto_values.append(None)
                continue
            valid = proto >= first
            affinity = full_softmax(sim[valid][:, first:])  # Pg×Ncg
            lo = start + first - work.group_offset(g)
            vals = work.values[g][lo : end - work.group_offset(g)]  # Ncg×G×Cv
            proto_values.append((affinity @ vals.flatten(1)).view(-1, *vals.shape[1:]))
            if g == 0:
                proto_shrinkage = affinity @ cand_shrinkage
        keep = torch.ones(n, dtype=torch.bool, device=cand_key.device)
        keep[start:end] = False
        work.keep(keep)
        self.long.add(proto_key, proto_shrinkage, None, _pad_groups(proto_values, self.long.num_groups))
        self._changed()

    # -- objects -------------------------------------------------------------------------------------------
    def remove_objects(self, object_ids: list[int]) -> None:
        """Forget objects: their values in both stores and their sensory memory."""
        order = self.objects
        for obj in object_ids:
            if obj not in order:
                continue
            for g, group in enumerate(self.groups):
                if obj in group:
                    row = group.index(obj)
                    for store in (self.work, self.long):
                        if g < store.num_groups:
                            store.remove_objects(g, [row])
                    group.remove(obj)
                    if not group:
                        del self.groups[g]
                    break
        if self.hidden is not None:
            rows = [i for i, o in enumerate(order) if o not in object_ids]
            self.hidden = self.hidden[:, rows] if rows else None
        for store in (self.work, self.long):
            store.trim_uncovered()
        if not self.groups:
            self.work.clear()
            self.long.clear()
            self.frame_elements = None
        self._changed()

    def nbytes(self) -> int:
        hidden = 0 if self.hidden is None else self.hidden.numel() * self.hidden.element_size()
        cached = 0 if self._readable is None else self._readable.keys.numel() * 4
        return self.work.nbytes() + self.long.nbytes() + hidden + cached

    # -- serialisation -------------------------------------------------------------------------------------
    def state_dict(self) -> MemoryState:
        """The three memories as plain tensors, ints and lists (for saving a job and resuming it exactly)."""
        return MemoryState(
            work=self.work.state_dict(),
            long=self.long.state_dict(),
            groups=[list(g) for g in self.groups],
            hidden=self.hidden,
            frame_elements=self.frame_elements,
        )

    def load_state_dict(self, state: MemoryState, device: torch.device | None = None) -> None:
        """Replace the memories with those of ``state`` (from :meth:`state_dict`), moved to ``device``.

        Raises ``ValueError`` when ``state`` is not consistent with this manager's settings.
        """
        if not isinstance(state, dict) or set(state) != set(MemoryState.__annotations__):
            raise ValueError("not a memory state")
        groups = state["groups"]
        if not isinstance(groups, list) or not all(
            isinstance(g, list) and g and all(isinstance(o, int) for o in g) for g in groups
        ):
            raise ValueError("memory state: groups must be non-empty lists of object ids")
        hidden = state["hidden"]
        num_objects = sum(len(g) for g in groups)
        if hidden is not None:
            if not isinstance(hidden, torch.Tensor) or hidden.ndim != 5 or hidden.shape[1] != num_objects:
                raise ValueError("memory state: the sensory memory does not hold one state per object")
            if hidden.shape[2] != self.hidden_dim:
                raise ValueError(
                    f"memory state: sensory memory of {hidden.shape[2]} channels, the network has "
                    f"{self.hidden_dim}"
                )
        frame_elements = state["frame_elements"]
        if frame_elements is not None and not isinstance(frame_elements, int):
            raise ValueError("memory state: frame_elements must be an int")
        work, long = (
            MemoryStore(count_usage=self.config.long_term),
            MemoryStore(count_usage=self.config.long_term),
        )
        work.load_state_dict(state["work"], device)
        long.load_state_dict(state["long"], device)
        for name, store in (("working", work), ("long-term", long)):
            if store.num_groups > len(groups):
                raise ValueError(f"memory state: the {name} memory has values for unknown object groups")
            for g, v in enumerate(store.values):
                if v.shape[1] != len(groups[g]):
                    raise ValueError(f"memory state: {name} memory group {g} does not match its objects")
        if work.num_groups != len(groups):
            raise ValueError("memory state: the working memory lacks values for some object groups")
        self.work, self.long = work, long
        self.groups = [list(g) for g in groups]
        self.hidden = hidden if hidden is None or device is None else hidden.to(device)
        self.frame_elements = frame_elements
        self._changed()


class MemoryState(TypedDict):
    """The serialised form of a :class:`MemoryManager` (plain tensors, ints and lists)."""

    work: StoreState
    long: StoreState
    groups: list[list[int]]
    hidden: torch.Tensor | None  # 1×N×Ch×H×W
    frame_elements: int | None


def _pad_groups(values: list[torch.Tensor | None], known_groups: int) -> list[torch.Tensor | None]:
    """Groups new to a store join with their first values: drop trailing groups that have none yet."""
    out = list(values)
    while len(out) > known_groups and out[-1] is None:
        out.pop()
    return out
