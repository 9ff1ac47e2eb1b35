"""Type stubs of the native layer (private; use :mod:`nfkv`)."""

from typing import List, Optional, Tuple

MAX_KEY_LEN: int
DEFAULT_OPTBASE: int
ABI_VERSION: int
MAX_TTL_MS: int
SET_COMMAND_NAMES: List[str]
GET_COMMAND_NAMES: List[str]

# (key, value, version, ttl_ms): ttl_ms None for an entry that never expires
_Entry = Tuple[bytes, bytes, int, Optional[int]]
# (is_put, key, value, create, replace, if_version, ttl_ms, keep_ttl)
_BatchOp = Tuple[bool, bytes, bytes, bool, bool, Optional[int], Optional[int], bool]
_FileRecord = Tuple[_BatchOp, int]
# (name, family, hook, match, prefix, priority, ipv4_bits, ipv6_bits,
#  (packets, unkeyed, drop, accept, mark))
_Classifier = Tuple[str, str, str, str, bytes, int, int, int, Tuple[int, int, int, int, int]]

# (kind, generation, last, key, value)
_Change = Tuple[str, int, int, bytes, Optional[bytes]]

class Watch:
    @property
    def generation(self) -> Optional[int]: ...
    def next(self) -> Optional[_Change]: ...

class Connection:
    @property
    def optbase(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def info(
        self,
    ) -> Tuple[Tuple[int, int, int, int, int, int, int, int, int, str], Tuple[int, bool, int, int, int]]: ...
    def stats(self) -> Tuple[List[Tuple[int, int]], List[Tuple[int, int]]]: ...
    def put(
        self,
        key: bytes,
        value: bytes,
        create: bool,
        replace: bool,
        if_version: Optional[int],
        ttl_ms: Optional[int] = None,
        keep_ttl: bool = False,
    ) -> None: ...
    def get(self, key: bytes) -> Tuple[int, bytes, Optional[int]]: ...
    def delete(self, key: bytes, if_version: Optional[int]) -> None: ...
    def flush(self) -> None: ...
    def apply(self, ops: List[_BatchOp], flush: bool) -> None: ...
    def list_page(self, prefix: bytes, after: bytes) -> Tuple[int, List[_Entry], bool]: ...
    def snapshot(self, prefix: bytes) -> Tuple[int, List[_Entry]]: ...
    def save(self, prefix: bytes, encoding: str) -> bytes: ...
    def restore(self, data: bytes, flush: bool, encoding: Optional[str]) -> Tuple[int, int, int]: ...
    def add_classifier(
        self,
        name: str,
        family: str,
        hook: str,
        matches: str,
        prefix: bytes,
        priority: int,
        ipv4_bits: int,
        ipv6_bits: int,
    ) -> None: ...
    def delete_classifier(self, name: str) -> None: ...
    def classifiers(self) -> List[_Classifier]: ...
    def add_element(
        self,
        name: str,
        target: str,
        action: str,
        ttl_ms: Optional[int] = None,
        keep_ttl: bool = False,
    ) -> None: ...
    def delete_element(self, name: str, target: str) -> None: ...
    def elements(self, name: str) -> List[Tuple[str, str]]: ...
    def watch(
        self, prefix: bytes, since: Optional[int], values: bool, timeout: Optional[float]
    ) -> Watch: ...

def connect(optbase: Optional[int] = None) -> Connection: ...
def read_batch_file(
    data: bytes, encoding: Optional[str] = None
) -> Tuple[str, Optional[bytes], bool, List[_FileRecord], Optional[int]]: ...
