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
available (lm-eval's default device is ``cuda:0``). The bare ``lm_eval --model
genesys`` command cannot work with lm-eval 0.4.13: its model registry is filled
only from its own module list and modules imported in the same process, and it
reads no entry points, so nothing outside the harness can register a model for
its command line. ``lm_eval`` alone still runs our tasks with its own models:
``lm_eval --model hf ... --include_path verifier/lmeval/tasks --tasks genesys_continuation``.
"""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent / "tasks"


def register() -> type:
    """Import the model module (registering ``genesys``) and return its class."""
    from verifier.lmeval.model import GenesysLM

    return GenesysLM
