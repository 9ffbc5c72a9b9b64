#!/usr/bin/env python3
"""A complete rdbench agent in the JSON-lines protocol, with nothing but the standard library.

Run it with:  rdbench run --task toy-task --agent command --command "python3 examples/echo_agent.py"

It follows a fixed plan (look around, score if it may, submit) and echoes every observation
to stderr, which rdbench keeps as the agent's log. Replace `choose_action` with your own
policy, in this language or any other: the protocol is in docs/agent-protocol.md.
"""

import json
import sys


def send(message):
    """Write one JSON message on its own line of stdout, and flush it at once."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def choose_action(plan, observation):
    """The next action of the plan; the observation is only echoed here."""
    print(f"observed: {observation[:300]}", file=sys.stderr)
    return plan.pop(0) if plan else {"tool": "submit", "input": {}}


def main():
    plan = []
    steps = 0
    for line in sys.stdin:
        message = json.loads(line)
        if message["type"] == "reset":
            tools = {tool["name"] for tool in message["tools"]}
            print(f"task {message['task']['id']}, tools {sorted(tools)}", file=sys.stderr)
            plan = [{"tool": "bash", "input": {"command": "ls -la"}}]
            if "score" in tools:
                plan.append({"tool": "score", "input": {}})
            plan.append({"tool": "submit", "input": {}})
        elif message["type"] == "end":
            break
        steps += 1
        action = choose_action(plan, message["observation"])
        # usage is optional: running totals of a model's tokens and dollars, if you use one
        action_message = {"type": "action", **action,
                          "usage": {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}}
        send(action_message)
    print(f"done after {steps} actions", file=sys.stderr)


if __name__ == "__main__":
    main()
