# 12 requests in flight, and each sync_io call holds a pool thread for the whole upstream
# wait: 12 threads serve them all at once. 11 leave one request queueing in every round;
# 13 or more leave threads that never run anything.
fewest_threads = 12
