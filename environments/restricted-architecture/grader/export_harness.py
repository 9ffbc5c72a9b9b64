"""Export the agent's model with torch.export: the only run of the agent's code at grading.

score.py copies this file to a directory the agent user may read and runs it as that user, in
its own isolated interpreter (`python -I`), through the grading kit's run_for_artifact:

    python -I export_harness.py WORKSPACE OUT_FILE

It imports WORKSPACE/model.py (the workspace goes at the END of sys.path: it cannot shadow
torch or the standard library), calls build_model(), loads WORKSPACE/model.pt with
torch.load(weights_only=True), switches the model to eval mode, and exports it with
torch.export.export under torch.no_grad() on random token ids of shape [BATCH, LENGTH] (int64;
never the hidden corpus, which this process cannot read). It saves the ExportedProgram to
OUT_FILE with torch.export.save. A failure exits 1 with one line on stderr saying at which
stage.

Nothing this process does is trusted: the agent's code shares it and may write any bytes to
OUT_FILE. The grader audits the file, checks the graph's operations and runs the graph itself
(program.py); what the agent's code does here at run time cannot change what is scored.
"""

from __future__ import annotations

import os
import sys
import traceback

BATCH = 256
LENGTH = 128
VOCAB = 32
EXPORT_HINT = (" (the model must be exportable by torch.export at input shape [256, 128]: no "
               "Python control flow on tensor values, no Python callbacks such as "
               "Tensor.apply_, no reading tensor values into Python)")


def main() -> None:
    """Import, build, load and export the agent's model to OUT_FILE."""
    workspace, out_file = sys.argv[1], sys.argv[2]
    stage = "starting"
    try:
        import torch

        torch.set_num_threads(2)
        example = torch.randint(0, VOCAB, (BATCH, LENGTH),
                                generator=torch.Generator().manual_seed(0))
        stage = "importing model.py"
        sys.path.append(workspace)
        import model as agent_model

        stage = "calling build_model()"
        net = agent_model.build_model()
        if not isinstance(net, torch.nn.Module):
            raise TypeError(f"build_model() returned a {type(net).__name__}, not a Module")
        stage = "loading model.pt"
        state = torch.load(os.path.join(workspace, "model.pt"), map_location="cpu",
                           weights_only=True)
        net.load_state_dict(state)
        net.eval()
        stage = "exporting the model with torch.export at input shape [256, 128]"
        with torch.no_grad():
            program = torch.export.export(net, (example,))
        stage = "saving the exported model"
        torch.export.save(program, out_file)
    except BaseException as error:  # the agent's code failed: say where, for the message
        text = " ".join("".join(traceback.format_exception_only(type(error), error)).split())
        hint = EXPORT_HINT if stage.startswith("exporting") else ""
        sys.stderr.write(f"\nwhile {stage}: {text[:500]}{hint}\n")
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)


if __name__ == "__main__":
    main()
