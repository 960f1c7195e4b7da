"""The adapter stage, after training: a linear map after pooling fitted to the job's fused
teacher's ranking of the whole corpus, written as a sentence-transformers Dense layer."""
