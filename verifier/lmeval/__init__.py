"""Genesys for lm-evaluation-harness 0.4: the ``genesys`` model and offline tasks.

* ``verifier/lmeval/model.py`` defines ``GenesysLM``, registered as ``genesys``
  when imported (``register()`` does that). Model arguments:
  ``checkpoint=DIR[,device=cpu,batch_size=16,max_length=N,max_gen_toks=256,dtype=float32]``.
* ``verifier/lmeval/tasks/`` holds offline tasks: ``genesys_continuation``
  (multiple-choice continuation of held-out stdlib source, generated locally; see
  ``tasks/continuation_data.py``). ``TASKS_DIR`` is the folder to give lm-eval as
  ``include_path``.

From Python: ``verifier.evaluate.run_lm_eval(checkpoint_dir, tasks)``.

From the command line, use this package's wrapper:

    python -m verifier.lmeval --model genesys --model_args checkpoint=DIR \\
        --tasks genesys_continuation [--limit N] [--device cpu] [--batch_size 16]

It imports the registration and runs lm-eval's own command line (``lm_eval run``,
every option of it) with the same arguments, adding ``--include_path TASKS_DIR``
(unless one is given) and ``--device cpu`` when no device is given and CUDA is not
available (lm-eval's default device is ``cuda:0``). When every task is one of
ours, the harness's ~15,000 built-in task files are not indexed (about 20 s saved).

The harness's own ``lm_eval`` command finds the model only when something it
loads before looking the model up imports ``verifier.lmeval.model``: lm-eval
0.4.13 fills its model registry from its own module list and from modules
imported in the same process, and reads no entry points. A task given by the
path of its YAML is such a thing (its ``!function`` module is imported while the
task list is resolved, and ours registers the model), so this works unwrapped:

    lm_eval --model genesys --model_args checkpoint=DIR --device cpu \\
        --tasks verifier/lmeval/tasks/genesys_continuation.yaml

whereas ``lm_eval --model genesys --tasks genesys_continuation`` (a task name,
even with ``--include_path``) fails with "no model for this name found": use
``python -m verifier.lmeval`` there. ``lm_eval`` alone also runs our task with
its own models: ``--include_path verifier/lmeval/tasks --tasks genesys_continuation``.
"""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent / "tasks"


def register() -> type:
    """Import the model module (registering ``genesys``) and return its class."""
    from verifier.lmeval.model import GenesysLM

    return GenesysLM
