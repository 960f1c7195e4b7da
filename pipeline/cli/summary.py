"""The one-screen summary printed at the end of `embsynth run`."""

from typing import Any

from pipeline.run.job import RunSummary


def format_summary(summary: RunSummary) -> str:
    """Kept, rejected by stage and reason, and throughput, as plain text."""
    lines = [
        f"dataset version: {summary.version_dir}",
        f"documents read:  {summary.documents}",
        f"pairs kept:      {summary.kept}",
        f"requests:        {summary.requests_generated} generated, "
        f"{summary.requests_cached} from the request cache",
    ]
    total_rejected = sum(sum(c.values()) for c in summary.rejected.values())
    lines.append(f"rejected:        {total_rejected}")
    for stage, reasons in summary.rejected.items():
        for reason, count in reasons.most_common():
            lines.append(f"  {stage:<8} {reason:<22} {count}")
    lines += [
        f"time:            {summary.seconds:.1f} s (generation {summary.generate_seconds:.1f} s)",
        f"pairs/s:         {summary.pairs_per_second:.2f}",
        f"tokens/s:        {summary.tokens_per_second:.0f} generated "
        f"({summary.tokens.completion} generated, {summary.tokens.prompt} prompt)",
        f"prompt tokens:   {summary.tokens.prompt} ({summary.tokens.cached} from the prefix "
        f"cache, {summary.tokens.uncached} computed)",
    ]
    if summary.kept:
        per_pair = summary.tokens.uncached / summary.kept
        lines.append(f"cost per pair:   {per_pair:.0f} computed prompt tokens per kept pair")
    lines.append(f'load it:         datasets.load_dataset("{summary.version_dir}")')
    return "\n".join(lines)


def format_selection(report: dict[str, Any]) -> str:
    """`embsynth train`'s choice (pipeline.selection): the split, each candidate's figures
    on it, and the line saying why the saved model won."""
    split = report["split"]
    missing = split["not_in_corpus"]
    lines = [
        f"validation split: {split['queries']} queries of {split['held_out_documents']} held-out "
        f"documents, ranked against {split['corpus']} documents ({split['corpus_source']}); "
        f"{split['training_pairs']} pairs trained on"
        + (
            f"; {missing} held-out pairs left out: their document is not in the corpus"
            if missing
            else ""
        ),
    ]
    for candidate in report["candidates"]:
        figures = "  ".join(
            f"{name} {candidate[name]:.4f}"
            for name in ("ndcg@10", "mrr@10", "teacher@10")
            if name in candidate
        )
        mark = "*" if candidate["name"] == report["chosen"] else " "
        lines.append(f" {mark} {candidate['name']:<22} {figures}")
    lines.append(report["why"])
    return "\n".join(lines)
