"""Memory engine: similarity, top-k readout, usage counting, consolidation, LFU eviction, late objects.

Everything runs on small generated tensors (Ck=4, Cv=3, frames of 2x3 positions) with fixed seeds, and every
expected number is computed independently in the test from the definitions (REFERENCE.md §3-5).
"""

from __future__ import annotations

import math

import pytest
import torch

from xmem.config import MemoryConfig
from xmem.memory import manager as manager_module
from xmem.memory import similarity as similarity_module
from xmem.memory.manager import MemoryManager
from xmem.memory.similarity import (
    full_softmax,
    row_topk,
    similarity,
    sparse_readout,
    topk_softmax,
    usage_of,
)

CK, CV, H, W = 4, 3, 2, 3
HW = H * W
NEW_LIFE = 1e-7  # life of an element that joins a store (REFERENCE §4)


# -- helpers ------------------------------------------------------------------------------------------------
def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ref_similarity(mem_key, mem_shrinkage, query_key, query_selection):
    """S[j, i] = -s_i Σ_c e_cj (k_ci - q_cj)² / √C by broadcasting (M×N), straight from the definition."""
    diff2 = (mem_key[:, None, :] - query_key[:, :, None]).pow(2)  # C×M×N
    if query_selection is not None:
        diff2 = diff2 * query_selection[:, :, None]
    shrinkage = 1.0 if mem_shrinkage is None else mem_shrinkage[None, :]
    return -shrinkage * diff2.sum(0) / math.sqrt(mem_key.shape[0])


def dense_topk_affinity(sim: torch.Tensor, k: int) -> torch.Tensor:
    """Dense M×N affinity: softmax over the k largest similarities of each row, zero elsewhere."""
    k = min(k, sim.shape[1])
    top = sim.topk(k, dim=1)
    dense = torch.zeros_like(sim)
    return dense.scatter_(1, top.indices, torch.softmax(top.values, dim=1))


def make_frame(g: torch.Generator, num_objects: int = 1):
    """key Ck×H×W, shrinkage 1×H×W (>= 1), selection Ck×H×W in [0, 1], value N×Cv×H×W."""
    key = torch.randn(CK, H, W, generator=g)
    shrinkage = 1 + torch.rand(1, H, W, generator=g)
    selection = torch.rand(CK, H, W, generator=g)
    value = torch.randn(num_objects, CV, H, W, generator=g)
    return key, shrinkage, selection, value


def small_config(**overrides) -> MemoryConfig:
    settings = {
        "mem_every": 1,
        "top_k": 5,
        "min_working_frames": 2,
        "max_working_frames": 4,
        "num_prototypes": 2,
        "max_long_term_elements": 1000,
    }
    settings.update(overrides)
    return MemoryConfig(**settings)


def group_columns(manager: MemoryManager, g: int):
    """Keys (Ck×N_g), shrinkage and values (N_g×G×Cv) of group g, long-term then working (memory order)."""
    keys, shrinkage, values = [], [], []
    for store in (manager.long, manager.work):
        n = store.group_size(g)
        if n:
            keys.append(store.key[:, store.size - n :])
            shrinkage.append(store.shrinkage[store.size - n :])
            values.append(store.values[g])
    return torch.cat(keys, dim=1), torch.cat(shrinkage), torch.cat(values)


def dense_read(manager: MemoryManager, query: torch.Tensor, selection: torch.Tensor):
    """Readout of every object with dense matrices from the stores' contents; also group 0's affinity."""
    q, e = query.flatten(1).double(), selection.flatten(1).double()
    outs, first_affinity = [], None
    for g in range(len(manager.groups)):
        keys, shrinkage, values = group_columns(manager, g)
        affinity = dense_topk_affinity(
            ref_similarity(keys.double(), shrinkage.double(), q, e), manager.config.top_k
        )
        outs.append(torch.einsum("mn,ngc->gcm", affinity, values.double()))
        if g == 0:
            first_affinity = affinity
    out = torch.cat(outs)
    return out.reshape(1, out.shape[0], CV, *query.shape[-2:]), first_affinity


def key_id(column: torch.Tensor) -> bytes:
    return column.contiguous().numpy().tobytes()


# -- 1. similarity ------------------------------------------------------------------------------------------
def test_similarity_with_selection_equals_brute_force_double_loop():
    """similarity() with shrinkage and selection is S[j,i] = -s_i Σ_c e_cj (k_ci - q_cj)² / √C, shape M×N."""
    g = gen(0)
    n, m = 7, 5
    k = torch.randn(CK, n, generator=g, dtype=torch.float64)
    s = 1 + torch.rand(n, generator=g, dtype=torch.float64)
    q = torch.randn(CK, m, generator=g, dtype=torch.float64)
    e = torch.rand(CK, m, generator=g, dtype=torch.float64)
    got = similarity(k, s, q, e)
    assert got.shape == (m, n)
    expected = torch.empty(m, n, dtype=torch.float64)
    for j in range(m):
        for i in range(n):
            total = sum(float(e[c, j]) * (float(k[c, i]) - float(q[c, j])) ** 2 for c in range(CK))
            expected[j, i] = -float(s[i]) * total / math.sqrt(CK)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    # without shrinkage it is the same with s = 1
    torch.testing.assert_close(similarity(k, None, q, e), expected / s[None, :], rtol=1e-10, atol=1e-10)


def test_similarity_without_selection_is_the_stcn_form_with_shrinkage():
    """Without selection: S = s (-|k|² + 2 k·q) / √C (the query norm is dropped), shape M×N; that differs from
    the full negative squared distance by a per-query constant only."""
    g = gen(1)
    n, m = 6, 4
    k = torch.randn(CK, n, generator=g, dtype=torch.float64)
    s = 1 + torch.rand(n, generator=g, dtype=torch.float64)
    q = torch.randn(CK, m, generator=g, dtype=torch.float64)
    got = similarity(k, s, q, None)
    assert got.shape == (m, n)
    expected = torch.empty(m, n, dtype=torch.float64)
    for j in range(m):
        for i in range(n):
            expected[j, i] = (
                float(s[i]) * (-float(k[:, i] @ k[:, i]) + 2 * float(k[:, i] @ q[:, j])) / math.sqrt(CK)
            )
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    # with s = 1: -|k - q|² / √C up to a per-row constant, so the softmax over memory is the same
    plain = similarity(k, None, q, None)
    torch.testing.assert_close(
        torch.softmax(plain, dim=1),
        torch.softmax(ref_similarity(k, None, q, None), dim=1),
        rtol=1e-10,
        atol=1e-10,
    )


# -- 2. top-k softmax ---------------------------------------------------------------------------------------
def test_topk_softmax_keeps_the_k_largest_and_normalises_each_row():
    """Each row of the dense affinity sums to 1, has exactly k non-zeros, at the k largest similarities."""
    g = gen(2)
    sim = torch.randn(5, 12, generator=g, dtype=torch.float64)
    weights, indices = topk_softmax(sim, 4)
    assert weights.shape == indices.shape == (5, 4)
    dense = torch.zeros_like(sim).scatter_(1, indices, weights)
    torch.testing.assert_close(dense.sum(1), torch.ones(5, dtype=torch.float64))
    assert ((dense > 0).sum(1) == 4).all()
    for row in range(5):
        assert set(indices[row].tolist()) == set(sim[row].argsort(descending=True)[:4].tolist())
        kept = sim[row, indices[row]]
        torch.testing.assert_close(weights[row], torch.exp(kept) / torch.exp(kept).sum())
    torch.testing.assert_close(dense, dense_topk_affinity(sim, 4))


@pytest.mark.parametrize("n", [1024, 4101, 9000])
def test_row_topk_prefilter_gives_the_values_of_torch_topk(n, monkeypatch):
    """Wide rows take the prefilter (block maxima, then the candidates of the k best blocks; at 9000
    columns the best blocks are found by the prefilter too): the k values of every row are those of
    torch.topk, at columns that hold them, also for rows whose largest values are packed into one block or
    lie in the last n mod 8 columns, and for repeated values."""
    g = gen(11)
    sim = torch.randn(40, n, generator=g)
    width = n // similarity_module.PREFILTER_PARTS
    sim[0, :50] += 10  # row 0: every large value in a run of neighbouring columns
    sim[1, 3::width] += 10  # row 1: every large value in one block (columns 3, 3 + W, ...)
    sim[2, -(n % 8 or 1) :] += 10  # row 2: large values in the tail
    sim[3] = torch.randint(0, 5, (n,), generator=g).float()  # row 3: few distinct values, many ties
    widths = []

    def spy(matrix, k):
        widths.append(matrix.shape[1])
        return real(matrix, k)

    real = similarity_module.row_topk
    monkeypatch.setattr(similarity_module, "row_topk", spy)
    values, indices = row_topk(sim, 30)
    assert widths == ([n // 8] if n < 8 * 1024 else [n // 8, n // 64])  # the levels of block maxima
    expected = torch.topk(sim, 30, dim=1).values
    assert values.shape == indices.shape == (40, 30)
    assert torch.equal(values.sort(1, descending=True).values, expected)
    assert torch.equal(torch.gather(sim, 1, indices), values)
    assert all(len(set(row.tolist())) == 30 for row in indices)  # no column twice


def test_row_topk_below_the_threshold_is_torch_topk():
    g = gen(12)
    sim = torch.randn(9, similarity_module.PREFILTER_MIN_COLUMNS - 1, generator=g)
    values, indices = row_topk(sim, 30)
    reference = torch.topk(sim, 30, dim=1, sorted=False)
    assert torch.equal(values, reference.values) and torch.equal(indices, reference.indices)


def test_read_reuses_the_similarity_storage_across_frames():
    """The M×N similarity matrix is written into storage kept by the manager: reads at one memory size
    use the same storage, it grows with the memory, and the readout is that of a fresh product."""
    g = gen(13)
    manager = MemoryManager(small_config(top_k=4), hidden_dim=2)
    manager.add_memory(*make_frame(g, num_objects=1), objects=[1])
    query, qsel = torch.randn(CK, H, W, generator=g), torch.rand(CK, H, W, generator=g)
    first = manager.read(query, qsel)
    storage = manager._scratch.data_ptr()
    assert torch.equal(manager.read(query, qsel), first)
    assert manager._scratch.data_ptr() == storage
    manager.add_memory(*make_frame(g, num_objects=1), objects=[1])
    manager.read(query, qsel)
    assert manager._scratch.numel() >= H * W * 2 * H * W


def test_row_chunks_cover_every_query_row_once():
    """On a CPU the M×N similarities are read in chunks of at most about SIMILARITY_CHUNK elements (never
    less than a row); on other devices in one piece."""
    cpu = torch.device("cpu")
    for m, n in [(1200, 7920), (2130, 15422), (6, 18), (1, 10**7)]:
        chunks = manager_module._row_chunks(m, n, cpu)
        assert [r for c in chunks for r in range(m)[c]] == list(range(m))
        rows = max(c.stop - c.start for c in chunks)
        assert rows == 1 or rows * n <= manager_module.SIMILARITY_CHUNK + n
        assert len(chunks) == -(-m * n // manager_module.SIMILARITY_CHUNK) or rows == 1
    assert manager_module._row_chunks(1200, 7920, torch.device("cuda")) == [slice(0, 1200)]


def test_topk_softmax_subtracts_the_max_before_exp():
    """Similarities around -1e4 underflow exp() entirely: a naive softmax gives NaN, topk_softmax gives the
    finite softmax of (values - max) (REFERENCE §5 defect 1)."""
    g = gen(3)
    sim = -1e4 + torch.randn(4, 10, generator=g)  # float32, every exp() is 0
    values = sim.topk(3, dim=1).values
    naive = torch.exp(values) / torch.exp(values).sum(1, keepdim=True)
    assert torch.isnan(naive).all()  # the input really does break a softmax without max subtraction

    weights, indices = topk_softmax(sim, 3)
    assert torch.isfinite(weights).all()
    kept = torch.gather(sim, 1, indices)
    shifted = torch.exp(kept - kept.max(1, keepdim=True).values)
    torch.testing.assert_close(weights, shifted / shifted.sum(1, keepdim=True))
    torch.testing.assert_close(weights.sum(1), torch.ones(4))


def test_topk_softmax_with_k_above_memory_size_keeps_everything():
    """top_k larger than N keeps all N elements: the plain softmax over the row."""
    g = gen(4)
    sim = torch.randn(3, 5, generator=g, dtype=torch.float64)
    weights, indices = topk_softmax(sim, 30)
    assert weights.shape == (3, 5)
    for row in range(3):
        assert sorted(indices[row].tolist()) == list(range(5))
    dense = torch.zeros_like(sim).scatter_(1, indices, weights)
    torch.testing.assert_close(dense, torch.softmax(sim, dim=1))
    torch.testing.assert_close(full_softmax(sim), torch.softmax(sim, dim=1))


# -- 3. and 4. sparse readout and usage ---------------------------------------------------------------------
def test_sparse_readout_equals_dense_scatter_matmul():
    """The sparse top-k readout M×D equals scattering the weights into a dense M×N affinity times the values."""
    g = gen(5)
    m, n, d = 6, 9, 7
    sim = torch.randn(m, n, generator=g)
    weights, indices = topk_softmax(sim, 4)
    values = torch.randn(n, d, generator=g)
    got = sparse_readout(weights, indices, values)
    assert got.shape == (m, d)
    dense = torch.zeros(m, n).scatter_(1, indices, weights)
    torch.testing.assert_close(got, dense @ values, rtol=1e-5, atol=1e-6)


def test_usage_of_equals_column_sums_of_the_dense_affinity():
    """usage_of gives, per memory element, its affinity summed over the query positions."""
    g = gen(6)
    m, n = 4, 20  # at most 12 of the 20 elements can be in some top-3
    sim = torch.randn(m, n, generator=g)
    weights, indices = topk_softmax(sim, 3)
    usage = usage_of(weights, indices, n)
    dense = torch.zeros(m, n).scatter_(1, indices, weights)
    assert usage.shape == (n,)
    torch.testing.assert_close(usage, dense.sum(0))
    assert (usage == 0).sum() >= n - 3 * m  # elements never in a top-3 keep usage 0
    torch.testing.assert_close(usage.sum(), torch.tensor(float(m)))


# -- 5. reading through the manager -------------------------------------------------------------------------
ONE_ROW_AT_A_TIME = 1  # SIMILARITY_CHUNK that reads the query rows one by one


@pytest.mark.parametrize("chunk", [manager_module.SIMILARITY_CHUNK, ONE_ROW_AT_A_TIME])
def test_read_one_frame_equals_dense_topk_readout_and_counts_usage(chunk, monkeypatch):
    """With one memory frame (two objects), read() is the dense top-k readout; each read adds the affinity
    mass summed over query pixels to use and 1 to life; new elements start at use 0, life 1e-7. The same
    holds when the query rows are read in chunks."""
    monkeypatch.setattr(manager_module, "SIMILARITY_CHUNK", chunk)
    g = gen(7)
    manager = MemoryManager(small_config(top_k=4), hidden_dim=2)
    key, shrinkage, selection, value = make_frame(g, num_objects=2)
    manager.add_memory(key, shrinkage, selection, value, objects=[1, 2])
    assert manager.groups == [[1, 2]]
    assert torch.equal(manager.work.use, torch.zeros(HW))
    torch.testing.assert_close(manager.work.life, torch.full((HW,), NEW_LIFE), rtol=1e-4, atol=0)

    use = torch.zeros(HW, dtype=torch.float64)
    for reads in (1, 2, 3):
        query, qsel = torch.randn(CK, H, W, generator=g), torch.rand(CK, H, W, generator=g)
        out = manager.read(query, qsel)
        sim = ref_similarity(
            key.flatten(1).double(),
            shrinkage.flatten().double(),
            query.flatten(1).double(),
            qsel.flatten(1).double(),
        )
        affinity = dense_topk_affinity(sim, 4)  # M×N, 4 non-zeros per query
        expected = torch.einsum("mn,ocn->ocm", affinity, value.flatten(2).double()).reshape(1, 2, CV, H, W)
        assert out.shape == (1, 2, CV, H, W)
        assert out[0].is_contiguous(memory_format=torch.channels_last)  # as the decoder's convolutions read
        torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
        use += affinity.sum(0)
        torch.testing.assert_close(manager.work.use.double(), use, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(manager.work.life, torch.full((HW,), reads + NEW_LIFE))
    assert (use == 0).any() or (use > 0).all()  # (usage varies over elements)
    assert use.max() > use.min()

    # a new frame joins with use 0 and life 1e-7; the old elements keep their counters
    manager.add_memory(*make_frame(g, num_objects=2), objects=[1, 2])
    torch.testing.assert_close(manager.work.use[:HW].double(), use, rtol=1e-5, atol=1e-6)
    assert torch.equal(manager.work.use[HW:], torch.zeros(HW))
    torch.testing.assert_close(
        manager.work.life,
        torch.cat([torch.full((HW,), 3 + NEW_LIFE), torch.full((HW,), NEW_LIFE)]),
        rtol=1e-4,
        atol=0,
    )


def test_read_on_empty_memory_raises():
    """Reading before any memory frame is an error, not a silent zero readout."""
    manager = MemoryManager(small_config(), hidden_dim=2)
    with pytest.raises(RuntimeError):
        manager.read(torch.zeros(CK, H, W), torch.ones(CK, H, W))


# -- 6. consolidation ---------------------------------------------------------------------------------------
def test_one_consolidation_worked_out_by_hand():
    """With T_min=2, T_max=4, P=2: adding the 4th frame keeps frames 0 and 3 in working memory, and turns the
    two candidates of frames 1-2 with the highest use/life into prototypes whose value and shrinkage are the
    full-softmax average over all candidates (candidate keys + shrinkage vs prototype key + selection)."""
    g = gen(8)
    manager = MemoryManager(small_config(top_k=5, num_prototypes=2), hidden_dim=2)
    frames = [make_frame(g) for _ in range(4)]
    for frame in frames[:3]:
        manager.add_memory(*frame, objects=[1])
    assert manager.work.size == 3 * HW and manager.long.size == 0

    use = 0.5 * torch.rand(3 * HW, generator=g)
    life = torch.full((3 * HW,), 2.0)
    use[:HW] = 50.0  # frame 0 is the most used, but is never a candidate
    use[HW + 1], life[HW + 1] = 5.0, 100.0  # highest use among candidates, low use/life
    use[HW + 4], life[HW + 4] = 0.9, 0.5  # use/life 1.8
    use[2 * HW + 3], life[2 * HW + 3] = 0.8, 0.5  # use/life 1.6
    manager.work.use, manager.work.life = use.clone(), life.clone()
    manager.add_memory(*frames[3], objects=[1])

    # working memory: frame 0 and the newest frame, counters of frame 0 untouched
    keys = [f[0].flatten(1) for f in frames]
    assert torch.equal(manager.work.key, torch.cat([keys[0], keys[3]], dim=1))
    element_major = [frames[t][3].flatten(2).permute(2, 0, 1) for t in (0, 3)]  # HW×1×Cv each
    assert torch.equal(manager.work.values[0], torch.cat(element_major))
    assert torch.equal(manager.work.use, torch.cat([use[:HW], torch.zeros(HW)]))
    assert torch.equal(manager.work.life, torch.cat([life[:HW], torch.full((HW,), NEW_LIFE)]))

    # prototypes, by hand
    cand_key = torch.cat([keys[1], keys[2]], dim=1).double()  # Ck×12
    cand_shrinkage = torch.cat([frames[1][1].flatten(), frames[2][1].flatten()]).double()
    cand_selection = torch.cat([frames[1][2].flatten(1), frames[2][2].flatten(1)], dim=1).double()
    cand_value = torch.cat([frames[t][3].flatten(2)[0].t() for t in (1, 2)]).double()  # 12×Cv
    norm = use[HW : 3 * HW] / life[HW : 3 * HW]
    proto = sorted(norm.argsort(descending=True)[:2].tolist())
    assert proto == [4, HW + 3]
    assert HW + 1 not in proto  # ranking by raw use would have picked it
    exp_values, exp_shrinkage = [], []
    for p in proto:
        q, e = cand_key[:, p], cand_selection[:, p]
        sim = torch.stack(
            [
                -cand_shrinkage[i] * (e * (cand_key[:, i] - q) ** 2).sum() / math.sqrt(CK)
                for i in range(2 * HW)
            ]
        )
        w = torch.exp(sim - sim.max())
        w = w / w.sum()
        exp_values.append((w[:, None] * cand_value).sum(0))
        exp_shrinkage.append((w * cand_shrinkage).sum())

    assert torch.equal(manager.long.key, cand_key[:, proto].float())
    assert manager.long.values[0].shape == (2, 1, CV)
    torch.testing.assert_close(
        manager.long.values[0][:, 0].double(), torch.stack(exp_values), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(
        manager.long.shrinkage.double(), torch.stack(exp_shrinkage), rtol=1e-5, atol=1e-5
    )
    assert manager.long.selection is None  # long-term memory keeps no selection
    assert torch.equal(manager.long.use, torch.zeros(2))
    torch.testing.assert_close(manager.long.life, torch.full((2,), NEW_LIFE), rtol=1e-4, atol=0)
    # the potentiated values are real averages, not the prototypes' own values
    assert not torch.allclose(manager.long.values[0][:, 0].double(), cand_value[proto], atol=1e-3)


# -- 7. eviction --------------------------------------------------------------------------------------------
def long_filled(use: list[float], life: list[float], max_elements: int, prototypes: int, late: int = 0):
    """A manager whose long-term memory holds len(use) elements; key channel 0 and the values encode the
    element index; with ``late`` > 0 a second group has values (negated indices) for the last ``late``."""
    manager = MemoryManager(
        small_config(num_prototypes=prototypes, max_long_term_elements=max_elements), hidden_dim=2
    )
    n = len(use)
    index = torch.arange(n, dtype=torch.float32)
    key = torch.cat([index[None], torch.zeros(CK - 1, n)])
    values = [index[:, None, None].expand(n, 1, CV).clone()]
    if late:
        values.append(-index[n - late :, None, None].expand(late, 1, CV).clone())
    manager.long.add(key, torch.ones(n), None, values)
    manager.long.use = torch.tensor(use)
    manager.long.life = torch.tensor(life)
    return manager


def surviving(manager: MemoryManager) -> list[int]:
    return [int(i) for i in manager.long.key[0].tolist()]


def check_long_pairing(manager: MemoryManager, late_from: int | None = None) -> None:
    """Every group's values still hold the index encoded in the key they are paired with."""
    ids = manager.long.key[0]
    assert torch.equal(manager.long.values[0][:, 0, 0], ids)
    if late_from is not None:
        off = manager.long.group_offset(1)
        assert torch.equal(manager.long.values[1][:, 0, 0], -ids[off:])
        assert (ids[off:] >= late_from).all() and (ids[:off] < late_from).all()


def test_eviction_removes_the_n_least_used_by_use_over_life():
    """long size 9, max 10, P 4: n = 9 - 6 = 3 elements with the lowest use/life go (not the lowest use);
    the survivors keep their order and their values."""
    use = [0.5, 9.0, 0.3, 0.1, 0.9, 0.8, 0.7, 0.2, 0.6]
    life = [1.0, 100.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # element 1: highest use, lowest use/life (0.09)
    manager = long_filled(use, life, max_elements=10, prototypes=4)
    manager._evict_if_needed()
    assert surviving(manager) == [0, 2, 4, 5, 6, 8]
    check_long_pairing(manager)
    torch.testing.assert_close(manager.long.use, torch.tensor([0.5, 0.3, 0.9, 0.8, 0.7, 0.6]))
    assert torch.equal(manager.long.life, torch.ones(6))


def test_eviction_drops_every_tie_at_the_threshold():
    """n = 3, but the 3rd smallest usage (0.3) is shared by three elements: all of them go, five remain."""
    use = [0.3, 0.9, 0.1, 0.3, 0.8, 0.2, 0.3, 0.7, 0.6]
    manager = long_filled(use, [1.0] * 9, max_elements=10, prototypes=4)
    manager._evict_if_needed()
    assert surviving(manager) == [1, 4, 7, 8]
    check_long_pairing(manager)


@pytest.mark.parametrize("size", [5, 6])
def test_eviction_below_or_exactly_at_the_limit_keeps_everything(size):
    """long size <= max - P needs no room: nothing goes, and size == max - P exactly does not crash
    (REFERENCE §5 defect 2)."""
    manager = long_filled([0.1 * (i + 1) for i in range(size)], [1.0] * size, max_elements=10, prototypes=4)
    manager._evict_if_needed()
    assert surviving(manager) == list(range(size))


def test_eviction_with_two_groups_keeps_values_paired():
    """Eviction once objects started on different frames neither raises (REFERENCE §5 defect 3) nor mispairs
    the late group's values with keys (it has values for the last 5 elements only)."""
    use = [0.5, 0.05, 0.3, 0.4, 0.9, 0.01, 0.7, 0.02, 0.6, 0.8]
    manager = long_filled(use, [1.0] * 10, max_elements=8, prototypes=2, late=5)
    check_long_pairing(manager, late_from=5)
    manager._evict_if_needed()  # n = 10 - 6 = 4: elements 1, 5, 7 and 2 go
    assert surviving(manager) == [0, 3, 4, 6, 8, 9]
    assert manager.long.group_size(1) == 3
    check_long_pairing(manager, late_from=5)


def test_eviction_is_triggered_by_add_memory_when_long_term_is_full():
    """A consolidating add_memory with long size >= max - P first evicts, then adds P prototypes: the long-term
    memory ends exactly at max, holding the most used old elements and the new prototypes."""
    g = gen(9)
    manager = long_filled([0.1 * (i + 1) for i in range(9)], [1.0] * 9, max_elements=10, prototypes=2)
    manager.long.shrinkage = 1 + torch.rand(9, generator=g)
    manager.groups = [[1]]
    for _ in range(4):
        manager.add_memory(*make_frame(g), objects=[1])
    assert manager.long.size == 10
    assert surviving(manager)[:8] == list(range(1, 9))  # only the least used (element 0) went
    assert manager.work.size == 2 * HW


# -- 8. objects that join late ------------------------------------------------------------------------------
JOIN = {1: 0, 2: 2, 3: 5}  # frame on which each object joins


def object_value(obj: int, frame: int, pos: int) -> torch.Tensor:
    return torch.tensor([float(obj), float(frame), float(pos)], dtype=torch.float64)


def expected_prototypes(keys, norm, truth, config):
    """Keys (Ck×N) and use/life of working memory once the new frame is in -> per prototype key: its expected
    shrinkage and, per object, its expected value (None where the object has no candidates yet); plus the
    kept working keys."""
    n = keys.shape[1]
    start, end = HW, n - (config.min_working_frames - 1) * HW
    cands = list(range(start, end))
    order = norm[start:end].argsort(descending=True)[: config.num_prototypes]
    proto = sorted(start + int(i) for i in order)
    info = [truth[key_id(keys[:, i])] for i in range(n)]
    protos = {}
    for p in proto:
        q, e = keys[:, p].double(), info[p]["selection"]
        entry = {}
        for obj, joined in JOIN.items():
            valid = [i for i in cands if info[i]["frame"] >= joined]
            if info[p]["frame"] < joined:
                entry[obj] = None
                continue
            sim = torch.stack(
                [
                    -info[i]["shrinkage"] * (e * (keys[:, i].double() - q) ** 2).sum() / math.sqrt(CK)
                    for i in valid
                ]
            )
            w = torch.softmax(sim, dim=0)
            entry[obj] = sum(
                w[j] * object_value(obj, info[i]["frame"], info[i]["pos"]) for j, i in enumerate(valid)
            )
            if obj == 1:
                entry["shrinkage"] = float(sum(w[j] * info[i]["shrinkage"] for j, i in enumerate(valid)))
        protos[key_id(keys[:, p])] = entry
    kept = torch.cat([keys[:, :start], keys[:, end:]], dim=1)
    return proto, protos, kept


def check_memory_pairing(manager, truth, proto_truth):
    """Every key is paired with the shrinkage / selection / values it was created with, in both stores."""
    work, long = manager.work, manager.long
    for i in range(work.size):
        info = truth[key_id(work.key[:, i])]
        assert float(work.shrinkage[i]) == pytest.approx(info["shrinkage"])
        assert torch.equal(work.selection[:, i].double(), info["selection"])
    for i in range(long.size):
        assert float(long.shrinkage[i]) == pytest.approx(
            proto_truth[key_id(long.key[:, i])]["shrinkage"], abs=1e-5
        )
    for g, group in enumerate(manager.groups):
        off = work.group_offset(g)
        for i in range(work.size):
            info = truth[key_id(work.key[:, i])]
            has = info["frame"] >= JOIN[group[0]]
            assert (i >= off) == has, f"group {g}, working element {i}"
            if has:
                expected = torch.stack([object_value(o, info["frame"], info["pos"]) for o in group])
                assert torch.equal(work.values[g][i - off].double(), expected), (
                    f"group {g}, working element {i}"
                )
        off = long.group_offset(g)
        for i in range(long.size):
            entry = proto_truth[key_id(long.key[:, i])]
            has = entry[group[0]] is not None
            assert (i >= off) == has, f"group {g}, long-term element {i}"
            if has:
                got = long.values[g][i - off].double()
                torch.testing.assert_close(got, torch.stack([entry[o] for o in group]), rtol=1e-5, atol=1e-5)
                # a prototype value is a convex combination of the object's own values from frames it existed in
                assert torch.allclose(got[:, 0], torch.tensor([float(o) for o in group], dtype=torch.float64))
                assert (got[:, 1] >= torch.tensor([JOIN[o] for o in group]) - 1e-5).all()


@pytest.mark.parametrize("chunk", [manager_module.SIMILARITY_CHUNK, ONE_ROW_AT_A_TIME])
def test_late_objects_stay_paired_through_consolidation_and_eviction(chunk, monkeypatch):
    """Objects 2 and 3 join on frames 2 and 5. Through repeated consolidations and evictions, every value row
    stays with the key it was created with (REFERENCE §5 defects 3 and 4), prototypes and working memory are
    exactly those of the spec, and read() equals a dense readout over each group's columns (also when the
    query rows are read in chunks)."""
    monkeypatch.setattr(manager_module, "SIMILARITY_CHUNK", chunk)
    g = gen(10)
    config = small_config(top_k=5, num_prototypes=3, max_long_term_elements=10)
    manager = MemoryManager(config, hidden_dim=2)
    truth, proto_truth = {}, {}
    consolidations = evictions = partial_late_group = 0
    for frame in range(24):
        objects = [o for o, joined in JOIN.items() if joined <= frame]
        key, shrinkage, selection, _ = make_frame(g)
        value = torch.stack(
            [
                torch.stack([object_value(o, frame, p) for p in range(HW)], dim=1).reshape(CV, H, W)
                for o in objects
            ]
        )
        for p in range(HW):
            truth[key_id(key.flatten(1)[:, p])] = {
                "frame": frame,
                "pos": p,
                "shrinkage": float(shrinkage.flatten()[p]),
                "selection": selection.flatten(1)[:, p].double(),
            }
        if manager.engaged:  # distinct usage, so that the prototype choice is well defined
            manager.work.use += 1e-3 * torch.rand(manager.work.size, generator=g)
        if frame == 3:  # force one frame-1 prototype, which object 2 has no value for
            manager.work.use[HW] = 1e3

        before_keys = None if manager.work.key is None else manager.work.key.clone()
        all_keys = key.flatten(1) if before_keys is None else torch.cat([before_keys, key.flatten(1)], dim=1)
        consolidating = all_keys.shape[1] >= config.max_working_frames * HW
        if consolidating:
            norm = torch.cat([manager.work.normalized_usage(), torch.zeros(HW)])
            _, protos, kept = expected_prototypes(all_keys, norm, truth, config)
            long_keys = manager.long.key
            limit = config.max_long_term_elements - config.num_prototypes
            if manager.long.size > limit:
                long_norm = manager.long.normalized_usage()
                threshold = long_norm.sort().values[manager.long.size - limit - 1]
                long_keys = long_keys[:, long_norm > threshold]
                evictions += 1
            proto_truth.update(protos)
        manager.add_memory(key, shrinkage, selection, value, objects=objects)
        assert manager.groups == [[o] for o in objects]

        if consolidating:
            consolidations += 1
            assert torch.equal(manager.work.key, kept)
            new_proto = torch.stack(
                [torch.frombuffer(bytearray(k), dtype=torch.float32) for k in protos], dim=1
            )
            expected_long = new_proto if long_keys is None else torch.cat([long_keys, new_proto], dim=1)
            assert torch.equal(manager.long.key, expected_long)
        if 0 < manager.long.group_size(1) < manager.long.size:
            partial_late_group += 1
        check_memory_pairing(manager, truth, proto_truth)

        query, qsel = torch.randn(CK, H, W, generator=g), torch.rand(CK, H, W, generator=g)
        use_before = torch.cat([s.use for s in (manager.long, manager.work) if s.size > 0]).double()
        out = manager.read(query, qsel)
        expected, affinity = dense_read(manager, query, qsel)
        assert out[0].is_contiguous(memory_format=torch.channels_last)  # several groups joined
        torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
        use_after = torch.cat([s.use for s in (manager.long, manager.work) if s.size > 0]).double()
        torch.testing.assert_close(use_after - use_before, affinity.sum(0), rtol=1e-4, atol=1e-5)

    assert consolidations >= 8 and evictions >= 5 and partial_late_group > 0
    assert manager.long.group_size(2) > 0  # object 3 reached long-term memory too


# -- 9. removing objects ------------------------------------------------------------------------------------
def test_remove_objects_keeps_the_others_readable_and_empties_at_the_end():
    """Removing object 1 (first group) leaves object 2's readout and sensory memory unchanged and drops the
    elements only object 1 had; removing every object empties the memory, which then accepts a new video."""
    g = gen(11)
    manager = MemoryManager(small_config(top_k=5, num_prototypes=3), hidden_dim=2)
    for frame in range(6):
        objects = [1] if frame < 2 else [1, 2]
        manager.add_memory(*make_frame(g, num_objects=len(objects)), objects=objects)
        manager.ensure_hidden(len(objects), torch.zeros(CK, H, W))
    assert manager.long.size > 0 and 0 < manager.long.group_size(1) <= manager.long.size
    hidden = torch.randn(1, 2, 2, H, W, generator=g)
    manager.set_hidden(hidden)
    query, qsel = torch.randn(CK, H, W, generator=g), torch.rand(CK, H, W, generator=g)
    before = manager.read(query, qsel)
    torch.testing.assert_close(before.double(), dense_read(manager, query, qsel)[0], rtol=1e-5, atol=1e-5)
    columns_of_2 = group_columns(manager, 1)

    manager.remove_objects([1, 99])  # an unknown id is ignored
    assert manager.groups == [[2]] and manager.objects == [2]
    assert torch.equal(manager.hidden, hidden[:, 1:2])
    for got, expected in zip(group_columns(manager, 0), columns_of_2, strict=True):
        assert torch.equal(got, expected)
    assert manager.work.size == manager.work.group_size(0) and manager.long.size == manager.long.group_size(0)
    after = manager.read(query, qsel)
    assert after.shape == (1, 1, CV, H, W)
    torch.testing.assert_close(after, before[:, 1:2], rtol=1e-5, atol=1e-6)

    manager.remove_objects([2])
    assert manager.groups == [] and not manager.engaged
    assert manager.work.size == 0 and manager.long.size == 0 and manager.hidden is None
    with pytest.raises(RuntimeError):
        manager.read(query, qsel)
    bigger = (torch.randn(CK, 3, 3), torch.ones(1, 3, 3), torch.rand(CK, 3, 3), torch.randn(1, CV, 3, 3))
    manager.add_memory(*bigger, objects=[5])  # another frame size is fine once the memory is empty
    assert manager.work.size == 9 and manager.read(torch.randn(CK, 3, 3), torch.rand(CK, 3, 3)).shape == (
        1,
        1,
        CV,
        3,
        3,
    )


# -- 10. bounded memory -------------------------------------------------------------------------------------
def test_memory_stays_bounded_over_a_long_video():
    """Over 200 memory frames (a second object from frame 50), working memory never exceeds T_max frames,
    long-term memory never exceeds its maximum (and reaches it), and nbytes() stays under a fixed bound."""
    g = gen(12)
    max_long = 12
    config = small_config(top_k=5, num_prototypes=3, max_long_term_elements=max_long)
    manager = MemoryManager(config, hidden_dim=2)
    work_max = config.max_working_frames * HW
    per_work = 2 * CK + 3 + 2 * CV  # key, selection, shrinkage, use, life, two groups' values
    per_long = CK + 3 + 2 * CV
    bound = 4 * (work_max * per_work + max_long * per_long + (2 * CK + 1) * (work_max + max_long))
    sizes = []
    for frame in range(200):
        objects = [1] if frame < 50 else [1, 2]
        manager.add_memory(*make_frame(g, num_objects=len(objects)), objects=objects)
        manager.read(torch.randn(CK, H, W, generator=g), torch.rand(CK, H, W, generator=g))
        assert manager.work.size <= work_max
        assert manager.long.size <= max_long
        assert manager.nbytes() <= bound
        sizes.append((manager.work.size, manager.long.size, manager.nbytes()))
    assert max(s[1] for s in sizes) == max_long
    assert sizes[-1][2] <= max(s[2] for s in sizes[60:100])  # no drift after object 2 joined and long filled
