"""The one exception type for bad user input.

Anything a user can get wrong (a missing corpus, a model name the server does
not know, a flag out of range) raises `UserError` with one sentence that names
the thing and says what to do. The `rnnserve` command prints that sentence and
exits with status 2; every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: printed as one line, exit status 2.

    Example:

    >>> raise UserError("corpus file 'x.txt' does not exist; pass --corpus PATH")
    Traceback (most recent call last):
      ...
    rnnserve.errors.UserError: corpus file 'x.txt' does not exist; pass --corpus PATH
    """

    exit_code = 2
