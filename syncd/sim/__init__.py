"""The built-in provincial platform simulator (demo and tests): see platform-api.md.

    sim = PlatformSimulator({"app": "secret"})
    with serve_in_thread(sim) as server:      # server.url → http://127.0.0.1:PORT
        sim.faults.error_ratio = 0.2          # or POST /_sim/faults {"error_ratio": 0.2}
        ...
        assert not sim.applied_twice()
"""

from syncd.sim.faults import Faults
from syncd.sim.server import SimServer, run_simulator, serve_in_thread
from syncd.sim.simulator import PlatformSimulator

__all__ = ["Faults", "PlatformSimulator", "SimServer", "run_simulator", "serve_in_thread"]
