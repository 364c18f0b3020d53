"""The tasks `rnnserve train` knows, by name (their flags and defaults are
in training/config.py, which loads without TensorFlow).

| task | structure | data | quality figure |
|---|---|---|---|
| charlm   | N→N tokens | a text corpus               | validation perplexity |
| hello    | N→N        | "hello" → "ohlol"           | accuracy (must be 100%) |
| classify | N→1        | synthetic token sequences   | accuracy vs majority class |
| seq2seq  | N→M        | digit strings → reversed    | exact-match vs copying |
| regress  | N→N reals  | noisy seasonal series       | MSE vs persistence |
| condgen  | 1→N        | (start, step) → progression | token accuracy vs per-position mode |
"""

from rnnserve.training.tasks.charlm import CharLM
from rnnserve.training.tasks.classify import Classify
from rnnserve.training.tasks.condgen import CondGen
from rnnserve.training.tasks.hello import Hello
from rnnserve.training.tasks.regress import Regress
from rnnserve.training.tasks.seq2seq import Seq2Seq
from rnnserve.training.tasks.task import Task, TaskData

TASKS = {task.name: task for task in (CharLM(), Hello(), Classify(), Seq2Seq(), Regress(), CondGen())}

__all__ = ["TASKS", "Task", "TaskData"]
