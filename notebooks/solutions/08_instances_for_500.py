import math

# Little's law: 500 req/s x about 0.11 s each (sync_io's 100 ms upstream, plus the
# instance's own time) = about 55 requests in flight. With perInstanceConcurrency 16,
# each instance holds 16 of them: 55 / 16 = 3.4, so at least 4 instances. Latency under
# load varies, so leave about 20 % headroom: 5.
latency_s = 0.11
in_flight = 500 * latency_s
instances_for_500 = math.ceil(1.2 * in_flight / 16)
