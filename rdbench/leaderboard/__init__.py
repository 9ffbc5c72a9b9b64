"""The leaderboard: submissions (bundles or run folders, with the verifier's verified.json)
in, a static site out.

`inputs` reads what `rdbench leaderboard` is given into `Submission`s, `aggregate` makes the
numbers (per-task means with bootstrap intervals, score@k at matched working time, the
overall score), `plots` draws them (matplotlib, PNG), `site` writes the HTML pages (the table
and one page per episode) and `markdown` the Markdown table.
"""

from rdbench.leaderboard.aggregate import Board, aggregate
from rdbench.leaderboard.inputs import Submission, SubmissionEpisode, load_inputs
from rdbench.leaderboard.site import write_site

__all__ = ["Board", "Submission", "SubmissionEpisode", "aggregate", "load_inputs", "write_site"]
