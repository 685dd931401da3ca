"""Training: the classifier, the line reader, real-world fine-tuning, data parallelism, evaluation, the comparison."""
