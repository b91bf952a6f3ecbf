"""round-robin as a kantai plug-in in Python: the next instance with room after the
previous choice, else hold. The same decisions as the built-in `round-robin`
(crates/pure/policy/src/lb/simple.rs); the policy scenario tests check it.

Build it into a component (CI does, with componentize-py from PyPI); `--stub-wasi` leaves
out the WASI imports, which the sandbox does not give (no files, network or clock):

    componentize-py -d crates/plugin/wit -w load-balancer-plugin \
        componentize --stub-wasi -p examples/policies/python round_robin -o round-robin.wasm
"""

from typing import Dict, List, Optional, Tuple

from wit_world import exports
from wit_world.exports.load_balancer import Candidates, Context, RequestNeeds
from wit_world.imports.types import Request


# Each balancer's turn (the index after its previous choice), by handle. Module state: the
# bindings may make a LoadBalancer object per call.
TURNS: Dict[int, int] = {}
MADE = [0]


class LoadBalancer(exports.LoadBalancer):
    def create(self, params: List[Tuple[str, str]]) -> int:
        MADE[0] += 1
        TURNS[MADE[0]] = 0
        return MADE[0]

    def reads(self, balancer: int) -> RequestNeeds:
        # Not the request: the host then copies none of it in.
        return RequestNeeds(request=False, headers=[])

    def pick(
        self, balancer: int, req: Optional[Request], candidates: Candidates, ctx: Context
    ) -> Optional[int]:
        n = len(candidates.id)
        if n == 0:
            return None
        start = TURNS[balancer] % n
        for step in range(n):
            i = (start + step) % n
            capacity = candidates.capacity[i]
            if capacity == 0 or candidates.in_flight[i] < capacity:
                TURNS[balancer] = i + 1
                return i
        return None

    def observe(self, balancer: int, id: int, latency: int, now: int) -> None:
        pass

    def destroy(self, balancer: int) -> None:
        TURNS.pop(balancer, None)
