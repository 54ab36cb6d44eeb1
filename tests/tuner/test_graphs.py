"""kNN bag graphs: compared with a brute-force loop, plus clipping, self-loops, ties, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tuner.data import graphs as graphs_module
from tuner.data.graphs import build_bag_graphs
from tuner.errors import MimlTuneError


def _brute_force(bag: np.ndarray, k: int) -> list[tuple[int, int]]:
    """(neighbour, centre) pairs as documented: by centre, nearest first, ties by index."""
    n = bag.shape[0]
    if n == 1:
        return [(0, 0)]
    x = bag.astype(np.float64)
    edges = []
    for p in range(n):
        others = [(float(np.sqrt(((x[p] - x[q]) ** 2).sum())), q) for q in range(n) if q != p]
        others.sort()  # by distance, then by index
        edges += [(q, p) for _, q in others[: min(k, n - 1)]]
    return edges


def _edges(graph) -> list[tuple[int, int]]:
    return [tuple(e) for e in graph.edge_index.t().tolist()]


def _random_bags(seed: int, count: int = 40, d: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(rng.integers(1, 13)), d)).astype(np.float32) for _ in range(count)]


@pytest.mark.parametrize("k", [1, 2, 3, 5, 20])
def test_edges_are_the_k_nearest_neighbours(k: int) -> None:
    bags = _random_bags(seed=k)
    graphs = build_bag_graphs(bags, k)
    assert len(graphs) == len(bags)
    for bag, graph in zip(bags, graphs, strict=True):
        assert _edges(graph) == _brute_force(bag, k)


def test_k_is_clipped_to_the_bag_size() -> None:
    bag = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    (graph,) = build_bag_graphs([bag], 5)
    assert graph.edge_index.shape == (2, 6)  # 3 centres x min(5, 3 - 1) neighbours
    assert torch.bincount(graph.edge_index[1]).tolist() == [2, 2, 2]
    assert not bool((graph.edge_index[0] == graph.edge_index[1]).any())  # no self-loops


def test_one_instance_bag_gets_a_self_loop() -> None:
    bags = [np.array([[1.0, 2.0]], dtype=np.float32), np.zeros((1, 2), dtype=np.float32)]
    first, zero = build_bag_graphs(bags, 3)
    assert first.edge_index.tolist() == [[0], [0]]
    assert first.edge_attr.item() == pytest.approx(1.0)
    assert zero.edge_index.tolist() == [[0], [0]]
    assert zero.edge_attr.tolist() == [[0.0]]  # the zero vector has no direction


def test_all_single_instance_bags() -> None:
    bags = [np.full((1, 3), float(i + 1), dtype=np.float32) for i in range(4)]
    graphs = build_bag_graphs(bags, 5)
    assert [g.edge_index.tolist() for g in graphs] == [[[0], [0]]] * 4


def test_edge_attributes_are_cosine_similarities() -> None:
    bags = _random_bags(seed=7)
    for bag, graph in zip(bags, build_bag_graphs(bags, 3), strict=True):
        x = torch.from_numpy(bag)
        src, dst = graph.edge_index
        expected = F.cosine_similarity(x[src], x[dst], dim=1).unsqueeze(1)
        assert graph.edge_attr.shape == (graph.num_edges, 1)
        torch.testing.assert_close(graph.edge_attr, expected, atol=1e-6, rtol=1e-5)


def test_output_types_and_features() -> None:
    bags = _random_bags(seed=1, count=5)
    for bag, graph in zip(bags, build_bag_graphs(bags, 2), strict=True):
        assert graph.x.dtype == torch.float32 and graph.edge_attr.dtype == torch.float32
        assert graph.edge_index.dtype == torch.long
        assert torch.equal(graph.x, torch.from_numpy(bag))
        assert graph.num_nodes == bag.shape[0]


def test_graphs_do_not_share_memory_with_the_input() -> None:
    bag = np.ones((3, 2), dtype=np.float32)
    (graph,) = build_bag_graphs([bag], 1)
    bag[:] = 5.0
    assert bool((graph.x == 1.0).all())


def test_distance_ties_resolve_by_index() -> None:
    # Instance 0 is equally far (1.0) from 1, 2 and 3; instances 1 and 2 coincide.
    bag = np.array([[0, 0], [1, 0], [1, 0], [-1, 0]], dtype=np.float32)
    (graph,) = build_bag_graphs([bag], 1)
    assert _edges(graph) == [(1, 0), (2, 1), (1, 2), (0, 3)]
    (again,) = build_bag_graphs([bag], 1)
    assert torch.equal(graph.edge_index, again.edge_index)


def test_tensor_and_numpy_inputs_agree() -> None:
    bags = _random_bags(seed=3, count=10)
    from_numpy = build_bag_graphs(bags, 3)
    from_torch = build_bag_graphs([torch.from_numpy(b).double() for b in bags], 3)
    for a, b in zip(from_numpy, from_torch, strict=True):
        assert torch.equal(a.edge_index, b.edge_index)
        torch.testing.assert_close(a.edge_attr, b.edge_attr)


def test_chunking_gives_the_same_graphs(monkeypatch: pytest.MonkeyPatch) -> None:
    bags = _random_bags(seed=5, count=30)
    whole = build_bag_graphs(bags, 3)
    monkeypatch.setattr(graphs_module, "_CHUNK_ELEMENTS", 50)  # about one bag per chunk
    chunked = build_bag_graphs(bags, 3)
    for a, b in zip(whole, chunked, strict=True):
        assert torch.equal(a.edge_index, b.edge_index)
        assert torch.equal(a.edge_attr, b.edge_attr)


def test_empty_input() -> None:
    assert build_bag_graphs([], 3) == []


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3"])
def test_k_must_be_a_positive_integer(k: object) -> None:
    with pytest.raises(MimlTuneError, match=r"k must be an integer >= 1, got k="):
        build_bag_graphs([np.zeros((2, 2), dtype=np.float32)], k)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bags", "message"),
    [
        ([np.zeros(3, dtype=np.float32)], r"bag 0 must be a 2-D"),
        ([np.zeros((2, 3)), np.zeros((0, 3))], r"bag 1 has no instances"),
        ([np.zeros((2, 3)), np.zeros((2, 4))], r"bag 1 has 4 features but bag 0 has 3"),
        ([np.zeros((2, 3)), np.array([[0.0, np.nan, 1.0]])], r"bag 1 holds NaN"),
    ],
)
def test_bad_bags_are_rejected(bags: list[np.ndarray], message: str) -> None:
    with pytest.raises(MimlTuneError, match=message):
        build_bag_graphs(bags, 2)


def test_real_birds_graphs(shared_data) -> None:
    from tuner.data import load_dataset

    data = load_dataset("birds")
    graphs = build_bag_graphs(data.bags, 5)
    for bag, graph in zip(data.bags, graphs, strict=True):
        n = bag.shape[0]
        assert graph.num_edges == n * min(5, n - 1)
    assert _edges(graphs[0]) == _brute_force(data.bags[0], 5)
