"""Before a sweep: the learning-rate range test and the batch-size finder."""
