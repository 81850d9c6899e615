# Little's law for the pool: threads busy = throughput x time a request holds its thread.
# profile_page holds its thread through both upstream calls, one after the other: measured
# alone, about 205 ms (2 x 100 ms, and a little for the calls themselves), not 100 ms.
# 40 req/s x 0.205 s = 8.2 threads busy on average: 9. The 32 users set how many requests
# wait for a thread, not how many threads the target needs.
fewest_threads = 9
