"""Input-document dedup: a corpus with repeated or near-repeated documents yields pairs that
teach the same thing twice (and lets a positive's twin become a false negative)."""

from pipeline.config.job import DedupConfig
from pipeline.dataset.records import Document, Reject
from pipeline.dedup.near import NearDuplicates
from pipeline.dedup.text import normalize, text_key


class DocumentDedup:
    """Drops documents whose text repeats (exactly or nearly) an earlier one of the run."""

    def __init__(self, config: DedupConfig) -> None:
        self.exact = config.documents.exact
        self.seen: dict[str, str] = {}
        near = config.near
        self.near = (
            NearDuplicates(near.threshold, near.num_perm, near.shingle)
            if config.documents.near
            else None
        )

    def check(self, documents: list[Document]) -> tuple[list[Document], list[Reject]]:
        """(documents to keep, rejects for the duplicates), in order."""
        kept: list[Document] = []
        rejects: list[Reject] = []
        for doc in documents:
            digest = text_key(doc.text)
            if self.exact and digest in self.seen:
                rejects.append(
                    Reject(doc.doc_id, None, "doc_dedup", "duplicate_document",
                           f"same text as {self.seen[digest]}", None)
                )  # fmt: skip
                continue
            self.seen.setdefault(digest, doc.doc_id)
            kept.append(doc)
        if self.near is None or not kept:
            return kept, rejects
        found = self.near.check([normalize(d.text) for d in kept], [d.doc_id for d in kept])
        unique = []
        for doc, match in zip(kept, found, strict=True):
            if match is None:
                unique.append(doc)
            else:
                rejects.append(
                    Reject(doc.doc_id, None, "doc_dedup", "near_duplicate_document",
                           f"{match[1]:.3f} similar to {match[0]}", None, match[1])
                )  # fmt: skip
        return unique, rejects
