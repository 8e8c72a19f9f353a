"""The course kit: exercises that check themselves, two editions from one source, a site.

- :func:`check` (``coax_nb.course.check("fisher_energy", energy, engine=engine, unit=u)``)
  compares a student's answer with the engine's own value and names the mistake it
  matches (:mod:`coax_nb.course.checks`);
- :func:`build` writes the student and instructor editions of the lessons
  (:mod:`coax_nb.course.editions`; ``coax-nb course build``);
- :func:`build_site` executes the instructor edition and the tutorials and writes a
  static, offline site (:mod:`coax_nb.course.site`; ``coax-nb course site``).
"""
from .checks import EXERCISES, CheckFailed, Passed, check
from .editions import EDITIONS, LessonError, build, lessons, read_lesson, stale
from .site import build_site

__all__ = ["check", "CheckFailed", "Passed", "EXERCISES", "build", "stale", "lessons", "read_lesson", "EDITIONS",
           "LessonError", "build_site"]
