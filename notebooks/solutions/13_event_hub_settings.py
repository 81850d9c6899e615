# Four partitions run at most four invocations at once, whatever the threads or processes.
# eh_one_at_a_time spends 100 ms per event of its batch: 4 / 0.1 s = 40 events/s at most,
# with any batch size. eh_batch_awaited awaits its batch's calls together: about 100 ms a
# batch, so 4 x 10 / 0.1 s = 400 events/s with batches of 10 (the run's are a little less:
# 240 events over 4 partitions make 6 full batches each). Threads do not matter for an
# async def handler; 1 is plenty.
event_hub_settings = dict(function="eh_batch_awaited", max_event_batch_size=10, threads=1)
