"""Free space for what a trial writes (checkpoints, the exported model): check it before a write, and
recognize a full file system however torch, safetensors or Python report it."""
from __future__ import annotations

import errno
import shutil
from contextlib import contextmanager
from pathlib import Path

# How a full disk reads once torch (its zip writer, inline_container.cc) or safetensors (Rust) has
# reworded ENOSPC: "[enforce fail at inline_container.cc:672] . unexpected pos 9536 vs 9428",
# "PytorchStreamWriter failed writing file data/0: file write failed",
# "Error while serializing: I/O error: No space left on device (os error 28)".
NO_SPACE_TEXT = ("no space left", "os error 28", "enospc", "disk quota exceeded", "unexpected pos",
                 "pytorchstreamwriter failed writing", "file write failed", "short write")
NO_SPACE_ERRNO = {errno.ENOSPC, errno.EDQUOT}


class DiskFull(OSError):
    """Not enough space where a trial writes: the machine's fault, not the trial's."""

    def __init__(self, where: Path, free: int, needed: int | None = None, what: str = "a checkpoint"):
        self.where, self.free, self.needed, self.what = Path(where), free, needed, what
        super().__init__(errno.ENOSPC, self.reason)

    @property
    def reason(self) -> str:
        need = f", {self.what} needs about {mb(self.needed)} MB" if self.needed else ""
        return f"no space left ({mb(self.free)} MB free{need})"

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"

    def __reduce__(self):  # picklable (multiprocessing, logging) despite the custom __init__
        return type(self), (self.where, self.free, self.needed, self.what)


def mb(n: int) -> int:
    return round(n / 2**20)


def chain(error: BaseException):
    """The error and those it was raised from or during (__cause__, __context__), each once."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def no_space(error: BaseException) -> bool:
    """Whether the error, or one in its chain, is a full file system."""
    for e in chain(error):
        if isinstance(e, DiskFull) or (isinstance(e, OSError) and e.errno in NO_SPACE_ERRNO):
            return True
        if any(text in str(e).lower() for text in NO_SPACE_TEXT):
            return True
    return False


def free_bytes(path: Path) -> int:
    """Free space on the file system that holds `path` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def require(where: Path, needed: int, what: str) -> None:
    """Raise DiskFull before writing `needed` bytes under `where` if the file system has less free."""
    free = free_bytes(where)
    if free < needed:
        raise DiskFull(where, free, needed, what)


@contextmanager
def writing(where: Path, needed: int, what: str):
    """Check that `needed` bytes are free under `where`, then run the write; a full disk during it
    (the estimate can be wrong, other processes write too) raises DiskFull from the original error."""
    require(where, needed, what)
    try:
        yield
    except Exception as e:
        error = as_disk_full(e, where, needed, what)
        if error is e:
            raise
        raise error from e


def as_disk_full(error: BaseException, where: Path, needed: int | None = None,
                 what: str = "a checkpoint") -> BaseException:
    """The error as DiskFull if it is a full file system reported otherwise; else the error itself."""
    if isinstance(error, DiskFull) or not no_space(error):
        return error
    return DiskFull(where, free_bytes(where), needed, what)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def model_bytes(model) -> int:
    """The bytes of a model's parameters and buffers, as safetensors stores them."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)
