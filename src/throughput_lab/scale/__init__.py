"""Scale-out: the platform's scale controller, simulated and run live on this machine.

- ``controller``: the rules, with their sources and the stated assumptions (one place);
- ``traffic``: the load shapes (steady, ramp, spike, a day), as Poisson arrivals;
- ``service``: the per-instance service time, calibrated from the engine's measured runs;
- ``simulation``: a discrete-event model (SimPy), request by request (fast enough for
  2,000 req/s on 1,000 instances for ten minutes: no aggregate model is needed);
- ``queueing``: Erlang C and the M/G/c approximation the simulation is checked against;
- ``live``: real host instances behind one router, started and stopped by the controller.
"""
