"""The error raised for bad user input (files, folders, masks): one message naming the file and the problem."""


class InputError(ValueError):
    """Bad input given by the user; the CLI prints its message and exits with status 2."""
