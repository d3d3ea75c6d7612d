"""A key-value memory store (the working memory or the long-term memory).

Elements are columns of the keys (Ck×N). Values are held per *object group*: the objects that joined
the memory on the same frame. A group that joined later has values only for the newest elements, so
each group's values (N_g×G×Cv, element-major) always pair with the *last* N_g keys. Every removal
goes through :meth:`MemoryStore.keep`, which keeps that pairing for every group (the reference code
loses it after consolidation or eviction once objects started on different frames).
"""

from __future__ import annotations

from typing import TypedDict

import torch

NEW_LIFE = 1e-7  # life of an element that joins a store; keeps usage / life finite


class MemoryStore:
    def __init__(self, *, count_usage: bool) -> None:
        self.count_usage = count_usage
        self.clear()

    def clear(self) -> None:
        """Forget every element."""
        self.key: torch.Tensor | None = None  # Ck×N
        self.shrinkage: torch.Tensor | None = None  # N
        self.selection: torch.Tensor | None = None  # Ck×N (working memory only)
        self.use: torch.Tensor | None = None  # N
        self.life: torch.Tensor | None = None  # N
        self.values: list[torch.Tensor] = []  # per group: N_g×G×Cv

    # -- sizes ---------------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return 0 if self.key is None else self.key.shape[1]

    @property
    def num_groups(self) -> int:
        return len(self.values)

    def group_size(self, group: int) -> int:
        return self.values[group].shape[0] if group < self.num_groups else 0

    def group_offset(self, group: int) -> int:
        """Index of the first element that has values for ``group``."""
        return self.size - self.group_size(group)

    def nbytes(self) -> int:
        tensors = [self.key, self.shrinkage, self.selection, self.use, self.life, *self.values]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    # -- updates -------------------------------------------------------------------------------------------
    def add(
        self,
        key: torch.Tensor,
        shrinkage: torch.Tensor | None,
        selection: torch.Tensor | None,
        values: list[torch.Tensor | None],
    ) -> None:
        """Append elements. ``key`` Ck×n; ``values[g]`` is n_g×G×Cv for the last n_g of the new elements
        (None: the group gets nothing); entries past the known groups start new groups."""
        n = key.shape[1]
        if self.key is None:
            self.key, self.shrinkage, self.selection = key, shrinkage, selection
        else:
            self.key = torch.cat([self.key, key], dim=1)
            if shrinkage is not None:
                self.shrinkage = torch.cat([self.shrinkage, shrinkage])
            if selection is not None:
                self.selection = torch.cat([self.selection, selection], dim=1)
        if self.count_usage:
            new_use = torch.zeros(n, dtype=torch.float32, device=key.device)
            new_life = torch.full((n,), NEW_LIFE, dtype=torch.float32, device=key.device)
            self.use = new_use if self.use is None else torch.cat([self.use, new_use])
            self.life = new_life if self.life is None else torch.cat([self.life, new_life])
        for g, v in enumerate(values):
            if v is None:
                if g >= self.num_groups:
                    raise ValueError("a new object group needs values")
                continue
            if v.shape[0] > n:
                raise ValueError(f"group {g}: {v.shape[0]} values for {n} new elements")
            if g < self.num_groups:
                self.values[g] = torch.cat([self.values[g], v], dim=0)
            elif g == self.num_groups:
                self.values.append(v)
            else:
                raise ValueError(f"group {g} added before group {self.num_groups}")

    def update_usage(self, usage: torch.Tensor) -> None:
        """Add one read's affinity mass per element (N) and one unit of life to every element."""
        if not self.count_usage:
            return
        assert self.use is not None and self.life is not None
        self.use += usage
        self.life += 1

    def normalized_usage(self) -> torch.Tensor:
        if not self.count_usage or self.use is None or self.life is None:
            raise RuntimeError("this store does not count usage")
        return self.use / self.life

    def keep(self, mask: torch.Tensor) -> None:
        """Keep the elements where ``mask`` (bool, N) is true; survivors keep their order, and every group's
        values stay paired with their keys."""
        assert self.key is not None
        offsets = [self.group_offset(g) for g in range(self.num_groups)]
        self.key = self.key[:, mask]
        if self.shrinkage is not None:
            self.shrinkage = self.shrinkage[mask]
        if self.selection is not None:
            self.selection = self.selection[:, mask]
        if self.use is not None and self.life is not None:
            self.use = self.use[mask]
            self.life = self.life[mask]
        self.values = [v[mask[o:]] for v, o in zip(self.values, offsets, strict=True)]

    def remove_objects(self, group: int, rows: list[int]) -> None:
        """Drop the values of some objects of a group (their row in the group). An emptied group is dropped."""
        v = self.values[group]
        keep = [i for i in range(v.shape[1]) if i not in rows]
        if keep:
            self.values[group] = v[:, keep]
        else:
            del self.values[group]

    def trim_uncovered(self) -> None:
        """Drop elements that no remaining group has values for (after objects are removed)."""
        if self.key is None:
            return
        covered = max((v.shape[0] for v in self.values), default=0)
        if covered < self.size:
            mask = torch.zeros(self.size, dtype=torch.bool, device=self.key.device)
            mask[self.size - covered :] = True
            self.keep(mask)
        if self.size == 0:
            self.clear()

    # -- serialisation -------------------------------------------------------------------------------------
    def state_dict(self) -> StoreState:
        """The store's elements as plain tensors (for saving a job and resuming it exactly)."""
        return StoreState(
            count_usage=self.count_usage,
            key=self.key,
            shrinkage=self.shrinkage,
            selection=self.selection,
            use=self.use,
            life=self.life,
            values=list(self.values),
        )

    def load_state_dict(self, state: StoreState, device: torch.device | None = None) -> None:
        """Replace the elements with those of ``state`` (from :meth:`state_dict`), moved to ``device``.

        Raises ``ValueError`` when ``state`` is not a consistent store state.
        """
        if not isinstance(state, dict) or set(state) != set(StoreState.__annotations__):
            raise ValueError("not a memory store state")
        if bool(state["count_usage"]) != self.count_usage:
            raise ValueError("the store state was saved with a different usage counting setting")
        tensors = {}
        for name in ("key", "shrinkage", "selection", "use", "life"):
            t = state[name]  # type: ignore[literal-required]
            if t is not None and not isinstance(t, torch.Tensor):
                raise ValueError(f"memory store state: {name} is not a tensor")
            tensors[name] = t if t is None or device is None else t.to(device)
        values = state["values"]
        if not isinstance(values, list) or not all(
            isinstance(v, torch.Tensor) and v.ndim == 3 for v in values
        ):
            raise ValueError("memory store state: values must be a list of N_g×G×Cv tensors")
        key = tensors["key"]
        n = 0 if key is None else key.shape[1]
        if key is None and values:
            raise ValueError("memory store state: values without keys")
        if key is not None:
            if key.ndim != 2:
                raise ValueError("memory store state: key must be Ck×N")
            for name in ("shrinkage", "use", "life"):
                t = tensors[name]
                if t is not None and tuple(t.shape) != (n,):
                    raise ValueError(f"memory store state: {name} does not have one entry per element")
            sel = tensors["selection"]
            if sel is not None and tuple(sel.shape) != tuple(key.shape):
                raise ValueError("memory store state: selection and key shapes differ")
            if self.count_usage and (tensors["use"] is None or tensors["life"] is None):
                raise ValueError("memory store state: usage counts are missing")
            if any(v.shape[0] > n for v in values):
                raise ValueError("memory store state: a group has more values than the store has elements")
        self.key, self.shrinkage, self.selection = tensors["key"], tensors["shrinkage"], tensors["selection"]
        self.use, self.life = tensors["use"], tensors["life"]
        self.values = [v if device is None else v.to(device) for v in values]


class StoreState(TypedDict):
    """The serialised form of a :class:`MemoryStore` (plain tensors, loadable with ``weights_only``)."""

    count_usage: bool
    key: torch.Tensor | None  # Ck×N
    shrinkage: torch.Tensor | None  # N
    selection: torch.Tensor | None  # Ck×N
    use: torch.Tensor | None  # N
    life: torch.Tensor | None  # N
    values: list[torch.Tensor]  # per group: N_g×G×Cv
