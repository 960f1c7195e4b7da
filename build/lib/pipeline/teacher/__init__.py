"""The teacher: a model stronger than the student scores each kept pair's positive and
negatives, so training can learn from its scores (margin-MSE) and the checks can judge
pairs by more than the student's own opinion."""
