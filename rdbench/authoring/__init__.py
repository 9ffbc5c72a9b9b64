"""Tools for task authors: a working skeleton task (`rdbench task new`) and the calibration
of a task's anchors (`rdbench task calibrate`). See docs/tasks.md."""

from rdbench.authoring.calibrate import Calibration, calibrate, write_calibration
from rdbench.authoring.template import new_task

__all__ = ["Calibration", "calibrate", "new_task", "write_calibration"]
