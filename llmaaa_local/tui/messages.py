"""What the TUI's parts tell each other: job messages from the worker, requests from the panes to the app, and what
a pane may read of the app (its session and the running job's name). Panes post these; they never set app state.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from textual.message import Message

from llmaaa_local.config import EngineSettings, TeacherSettings
from llmaaa_local.jobs import JobControl
from llmaaa_local.project import Project
from llmaaa_local.session import Session

# A job runs in the worker thread and returns the one-line summary the Run tab and a notification show. A project
# job gets a project connection of its own (SQLite connections stay in their thread); a free job needs none.
ProjectJob = Callable[[Project, JobControl], str]
FreeJob = Callable[[JobControl], str]

class Host(Protocol):
    """What panes read of the app."""

    session: Session
    job_name: str


# --- from the worker ---------------------------------------------------------------------------------------------


class JobStarted(Message):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class JobProgress(Message):
    """A progress report from the worker: counts, a rates line, and optionally the newest annotation."""

    def __init__(self, name: str, done: int, total: int | None, rates: str, latest: dict[str, Any] | None = None,
                 ) -> None:
        super().__init__()
        self.name, self.done, self.total, self.rates, self.latest = name, done, total, rates, latest


class JobLog(Message):
    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class JobEnded(Message):
    def __init__(self, name: str, summary: str, failed: bool, cancelled: bool = False) -> None:
        super().__init__()
        self.name, self.summary, self.failed, self.cancelled = name, summary, failed, cancelled


# --- from the panes ----------------------------------------------------------------------------------------------


class StartJob(Message):
    """Run `job` on the open project in the worker unless a job is running; `watch`: show it on the Run tab."""

    def __init__(self, name: str, job: ProjectJob, watch: bool = False) -> None:
        super().__init__()
        self.name, self.job, self.watch = name, job, watch


class StartFreeJob(Message):
    """Run `job`, which needs no project (a model pull, the machine check), in the worker unless a job is running."""

    def __init__(self, name: str, job: FreeJob) -> None:
        super().__init__()
        self.name, self.job = name, job


class ProjectChosen(Message):
    """The user opened or created the project in `folder`."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder


class ModelsChosen(Message):
    """The user applied teacher settings, a student and an engine on the Models tab."""

    def __init__(self, teacher: TeacherSettings, student: str, engine: EngineSettings) -> None:
        super().__init__()
        self.teacher, self.student, self.engine = teacher, student, engine
