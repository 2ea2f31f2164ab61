"""Re-ID evaluation: distances, CMC/mAP (three AP variants), k-reciprocal re-ranking, top-k search.

* :func:`pairwise_distance` - Euclidean, squared Euclidean or cosine distances.
* :func:`evaluate` / :class:`RankResult` - CMC and mAP under the Market-1501 protocol, exact and
  vectorised; :func:`evaluate_blocks` for galleries too large to hold as one matrix.
* :func:`rerank` / :func:`rerank_features` - k-reciprocal re-ranking (Zhong et al., CVPR 2017).
* :func:`topk_search` - nearest gallery items per query, streamed over gallery chunks.
* :func:`evaluate_features` - embeddings to :class:`RankResult` in one call, a chunk of queries at a
  time within an optional memory bound (:func:`parse_memory`); re-ranked rows are streamed the same way
  (:func:`rerank_feature_blocks`), so MSMT17-size sets need no ``(Q + G)^2`` or ``Q x G`` matrix.
* :class:`QueryChunkRanker` - CMC/mAP from distance rows that arrive a chunk of queries at a time.
"""

from reidlib.evaluation.distance import METRICS, pairwise_distance
from reidlib.evaluation.features import evaluate_features
from reidlib.evaluation.memory import MemoryBoundError, parse_memory
from reidlib.evaluation.rank import (
    AP_MODES,
    QueryChunkRanker,
    RankResult,
    average_precision_from_ranks,
    evaluate,
    evaluate_blocks,
)
from reidlib.evaluation.rerank import rerank, rerank_feature_blocks, rerank_features
from reidlib.evaluation.search import smallest_k, topk_search

__all__ = [
    "AP_MODES",
    "METRICS",
    "MemoryBoundError",
    "QueryChunkRanker",
    "RankResult",
    "average_precision_from_ranks",
    "evaluate",
    "evaluate_blocks",
    "evaluate_features",
    "pairwise_distance",
    "parse_memory",
    "rerank",
    "rerank_feature_blocks",
    "rerank_features",
    "smallest_k",
    "topk_search",
]
