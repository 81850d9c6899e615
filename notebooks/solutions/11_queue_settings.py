# The queue service hands out at most 32 messages a call, so batchSize is at most 32. With
# newBatchThreshold at least batchSize, the listener fetches again while the last batch still
# runs: up to 32 + 32 = 64 in progress, and about that many on average for an async handler,
# which needs no pool threads.
queue_settings = dict(batch_size=32, new_batch_threshold=32)
