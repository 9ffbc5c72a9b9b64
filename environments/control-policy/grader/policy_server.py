"""Serves the agent's policy to the grader, one JSON object a line on stdin and stdout.

    python -I policy_server.py WORKSPACE

Runs as the agent user, in WORKSPACE. Imports `policy` from there, calls its `load()` (if it
has one) and says {"ready": true}. Then, for every request {"obs": [6 numbers],
"new_episode": bool}, it calls `reset()` first when a new episode begins (if the policy has
one) and answers {"action": what act(obs) returned}. Whatever the policy prints goes to
stderr. The grader checks every answer itself; nothing here is trusted.
"""

import json
import os
import sys


def main() -> None:
    """Load the policy and answer requests until stdin closes."""
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the policy prints goes to stderr, not into the protocol

    def send(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    import numpy as np

    sys.path.insert(0, sys.argv[1])
    import policy

    if hasattr(policy, "load"):
        policy.load()
    reset = getattr(policy, "reset", None)
    send({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        if request["new_episode"] and reset is not None:
            reset()
        action = policy.act(np.array(request["obs"], dtype=np.float32))
        if isinstance(action, np.integer | np.bool_):
            action = action.item()
        send({"action": action if isinstance(action, int) else repr(action)[:80]})


if __name__ == "__main__":
    main()
