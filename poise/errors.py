"""The one error type for mistakes a user can fix (a bad key, value, path or file): ``poise`` commands print it
as one line that says what to do. Every other exception is a bug and keeps its traceback.

It subclasses ``ValueError`` so that callers of the library that catch ``ValueError`` keep working.
"""


class PoiseError(ValueError):
    """A user-fixable problem; the message names the key, file or option and says what to do."""


class TrainingDiverged(PoiseError):
    """The training loss became NaN or inf: a result of the settings (most often the learning rate), which a
    bench records as its outcome rather than stopping on it. ``epoch`` counts from 1."""

    def __init__(self, message: str, epoch: int, loss: float):
        super().__init__(message)
        self.epoch, self.loss = epoch, loss

    def __reduce__(self):  # a worker process's error reaches the bench's parent process whole
        return type(self), (str(self), self.epoch, self.loss)


def disk_full(err: BaseException) -> bool:
    """Whether ``err`` says the disk is full: errno ENOSPC, or torch.save's "unexpected pos N vs M"."""
    import errno

    if isinstance(err, OSError):
        return err.errno == errno.ENOSPC
    return isinstance(err, RuntimeError) and ("unexpected pos" in str(err) or "No space left" in str(err))


def no_space_left(path, then: str) -> PoiseError:
    """A full disk as a user-fixable error: names ``path`` and the space left on its disk, then what to do."""
    import shutil
    from pathlib import Path

    where = next(p for p in (Path(path), *Path(path).absolute().parents) if p.exists())
    return PoiseError(f"{path}: no space left on the device ({shutil.disk_usage(where).free / 2 ** 20:.1f} MiB "
                      f"free); {then}")
