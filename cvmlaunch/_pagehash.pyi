"""Types of the optional C module built from _pagehash.c (see there)."""

from _typeshed import ReadableBuffer

PAGE_SIZE: int
DIGEST_SIZE: int

def sha384_pages(buffer: ReadableBuffer, first_page: int, count: int, /) -> bytes: ...
def sha384(buffer: ReadableBuffer, /) -> bytes: ...
