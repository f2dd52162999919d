"""Exact top-N recommendations: ``selection`` (top-k of a score matrix, numpy), ``product`` (a block of users
against the item factors, chunk by chunk, chunks no user can reach skipped), ``spark`` (every user's list in the
executors, the item matrix broadcast). The names the stages and benches use are here."""
from recjob.topk.product import (ItemChunks, block_scores, chunk_bounds, item_chunks, laid_out,  # noqa: F401
                                 layered_scores, layers_part, score_block, top_k_product, with_bias, with_ones)
from recjob.topk.selection import GROUP, top_k, top_k_chunked  # noqa: F401
from recjob.topk.spark import (OUT_SCHEMA, arrow_scorer, encoded_users, item_columns, item_matrix,  # noqa: F401
                               recommend, seen_columns)
