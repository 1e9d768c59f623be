"""Small in-memory stand-ins shared by unit tests."""

import threading


class FakeKV:
    """Consul KV semantics that matter here: ModifyIndex, cas=0 create-only, cas mismatch false."""

    def __init__(self):
        self.lock = threading.Lock()
        self.index = 1
        self.data: dict[str, tuple[bytes, int]] = {}
        self.puts = 0

    def kv_get(self, key, recurse=False, index=None, wait=None):
        with self.lock:
            if key not in self.data:
                return self.index, None
            value, modify = self.data[key]
            return self.index, {"Key": key, "Value": value, "ModifyIndex": modify}

    def kv_put(self, key, value, cas=None):
        with self.lock:
            self.puts += 1
            current = self.data.get(key)
            if cas is not None and (current[1] if current else 0) != cas:
                return False
            self.index += 1
            self.data[key] = (value if isinstance(value, bytes) else value.encode(), self.index)
            return True
