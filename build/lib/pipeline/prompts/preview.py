"""`embsynth prompts render`: the exact messages the generator would see for the first N
documents of a job, without loading the generator.

Stage 1 is shown as it will be sent. Later stages depend on earlier outputs, which do not
exist yet: those values are placeholders, marked `<placeholder: ...>` in the text. When the
job retrieves personas, the (small) embedder is loaded to choose them, so the candidates
shown are the ones the run would use.
"""

import json
from collections.abc import Iterator

from pipeline.config.job import JobConfig
from pipeline.corpus.embedder import open_embedder
from pipeline.corpus.reader import read_batches
from pipeline.dataset.records import Candidate
from pipeline.generation.planner import plan
from pipeline.generation.stages import enum_values, variables
from pipeline.personas.library import load_personas
from pipeline.personas.retrieval import PersonaChooser
from pipeline.prompts.library import PromptLibrary, schema_for
from pipeline.prompts.samples import earlier_placeholders


def candidates(config: JobConfig, library: PromptLibrary, limit: int) -> list[Candidate]:
    """The planned candidates of the job's first `limit` documents."""
    documents = [doc for docs, _ in read_batches(config.input, limit) for doc in docs]
    choices = None
    if config.personas.select == "retrieve" and documents:
        embedder = open_embedder(config.embedder)
        chooser = PersonaChooser.for_job(config.tasks, library.personas, embedder, None)
        choices = chooser.choose(documents)
    return plan(documents, config, library, choices)


def preview(config: JobConfig, limit: int) -> Iterator[str]:
    """Lines of text: for each candidate, each stage's rendered messages and schema."""
    library = PromptLibrary(config.prompts_dir, load_personas(config.personas))
    for candidate in candidates(config, library, limit):
        spec = library.task(candidate.task)
        yield (
            f"=== document {candidate.doc.doc_id} · task {candidate.task} · "
            f"query language {candidate.query_language} · {candidate.query_words} words"
        )
        for index, stage in enumerate(spec.stages):
            values = variables(candidate, library)
            values |= {  # a planned question type or difficulty is known before stage 1
                key: text
                for key, text in earlier_placeholders(spec, index).items()
                if not (key in ("question_type", "difficulty") and values.get(key))
            }
            yield f"--- stage {index + 1}/{len(spec.stages)}: {stage.name}"
            if config.prompt_layout == "shared" and spec.shares_lead:
                messages = library.render_shared(spec, stage, values)
            else:
                messages = library.render(stage, values)
            for message in messages:
                yield f"[{message['role']}]"
                yield message["content"]
            schema = schema_for(stage, enum_values(candidate))
            yield f"[schema] {json.dumps(schema, ensure_ascii=False)}"
