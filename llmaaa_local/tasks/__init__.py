"""The task interface: each task builds its prompts and output constraints, parses answers and scores labels.

Annotator, trainer and loop call these methods and never branch on the task's name. The interface and the prompt
helpers live in `base`; this module picks the task for a project.
"""

from __future__ import annotations

from ..config import ProjectSettings
from .base import CONTENT_FREE, Parsed, Task, clip, label_lines
from .classify import Classification
from .ner import EntityRecognition
from .relation import RelationClassification

__all__ = ["CONTENT_FREE", "Parsed", "Task", "clip", "label_lines", "task_for"]
TASKS: dict[str, type[Classification | EntityRecognition | RelationClassification]] = {
    "classify": Classification, "ner": EntityRecognition, "re": RelationClassification,
}


def task_for(settings: ProjectSettings) -> Task:
    return TASKS[settings.task](settings)
